// SPDX-License-Identifier: AGPL-3.0-only
// Prints the CID that the reference JavaScript UnixFS importer computes for a file, with
// the settings kubo's `ipfs add` uses: 256 KiB fixed chunks, balanced layout with 174
// links per node; CIDv0 with dag-pb leaves, or CIDv1 with raw leaves.
// Usage: node unixfs_cid.mjs PATH CID_VERSION
import { createReadStream } from 'node:fs'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

const [path, version] = process.argv.slice(2)
const cidVersion = Number(version)

// Only the CID is wanted, so blocks are dropped instead of stored.
const blackhole = {
  async put (cid) { return cid }
}

const options = {
  cidVersion,
  rawLeaves: cidVersion === 1,
  leafType: 'file',
  reduceSingleLeafToSelf: true,
  chunker: fixedSize({ chunkSize: 262144 }),
  layout: balanced({ maxChildrenPerNode: 174 }),
  wrapWithDirectory: false
}

let last
for await (const entry of importer([{ content: createReadStream(path) }], blackhole, options)) {
  last = entry
}
process.stdout.write(last.cid.toString() + '\n')

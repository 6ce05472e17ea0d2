// SPDX-License-Identifier: AGPL-3.0-only
// Prints the CID that the reference JavaScript UnixFS importer computes, configured the
// way kubo imports under a CID profile (IPIP-499):
//   0 | unixfs-v0-2015   256 KiB fixed chunks, balanced layout with 174 links per node,
//                        CIDv0 dag-pb leaves, HAMT past 256 KiB of link names + CIDs;
//   1                    the same chunks and width with CIDv1 raw leaves (--cid-version=1);
//   unixfs-v1-2025       1 MiB chunks, 1,024 links per node, CIDv1 raw leaves, HAMT past
//                        256 KiB of encoded directory block.
// Every parameter is spelled out rather than left to the library's defaults or to its own
// `profile` option; the script also imports with `profile: NAME` and fails if the two
// disagree, so a library whose profile drifted from these parameters is noticed.
// HAMT fanout is 256 (8 bits) in every case.
//
// Usage:
//   node unixfs_cid.mjs file PATH PROFILE       a file
//   node unixfs_cid.mjs dir PATH PROFILE        a directory, as `ipfs add -r` (hidden
//                                               entries left out, empty ones kept)
//   node unixfs_cid.mjs pattern SIZE PROFILE    SIZE bytes of the seeded pattern below,
//                                               generated here rather than written to disk
import { createHash } from 'node:crypto'
import { createReadStream, readdirSync, lstatSync } from 'node:fs'
import { join } from 'node:path'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

const [kind, target, profileArg] = process.argv.slice(2)

const PARAMETERS = {
  'unixfs-v0-2015': { cidVersion: 0, rawLeaves: false, chunkSize: 262144, width: 174, strategy: 'links-bytes' },
  1: { cidVersion: 1, rawLeaves: true, chunkSize: 262144, width: 174, strategy: 'links-bytes' },
  'unixfs-v1-2025': { cidVersion: 1, rawLeaves: true, chunkSize: 1048576, width: 1024, strategy: 'block-bytes' }
}
PARAMETERS[0] = PARAMETERS['unixfs-v0-2015']
const p = PARAMETERS[profileArg]
if (p === undefined) throw new Error(`unknown profile ${profileArg}`)

// The pattern: 256 KiB units, unit i = its index (8 bytes, big-endian) followed by the
// rest of a 256 KiB base block, the base being sha256(seed || counter) in counter mode.
// Every 256 KiB and every 1 MiB chunk differs, so no leaf is shared by accident.
function * pattern (size) {
  const unit = 262144
  const base = Buffer.alloc(unit)
  for (let counter = 0; counter * 32 < unit; counter++) {
    const c = Buffer.alloc(8)
    c.writeBigUInt64BE(BigInt(counter))
    createHash('sha256').update('mercato-cid-pattern').update(c).digest().copy(base, counter * 32)
  }
  for (let i = 0; i * unit < size; i++) {
    const piece = Buffer.from(base)
    piece.writeBigUInt64BE(BigInt(i))
    yield piece.subarray(0, Math.min(unit, size - i * unit))
  }
}

function candidates () {
  if (kind === 'file') return [{ content: createReadStream(target) }]
  if (kind === 'pattern') return [{ content: pattern(Number(target)) }]
  if (kind !== 'dir') throw new Error(`unknown kind ${kind}`)
  const out = []
  const walk = (dir, prefix) => {
    out.push({ path: prefix })
    for (const name of readdirSync(dir)) {
      if (name.startsWith('.')) continue
      const full = join(dir, name)
      const st = lstatSync(full)
      if (st.isDirectory()) walk(full, `${prefix}/${name}`)
      else if (st.isFile()) out.push({ path: `${prefix}/${name}`, content: createReadStream(full) })
      else throw new Error(`${full}: only files and directories are compared`)
    }
  }
  walk(target, 'root')
  return out
}

// Only the CID is wanted, so blocks are dropped instead of stored.
const blackhole = {
  async put (cid) { return cid },
  async has () { return false }
}

async function rootCid (options) {
  let last
  for await (const entry of importer(candidates(), blackhole, options)) {
    if (kind !== 'dir' || entry.path === 'root') last = entry
  }
  return last.cid.toString()
}

const explicit = await rootCid({
  cidVersion: p.cidVersion,
  rawLeaves: p.rawLeaves,
  leafType: 'file',
  reduceSingleLeafToSelf: true,
  chunker: fixedSize({ chunkSize: p.chunkSize }),
  layout: balanced({ maxChildrenPerNode: p.width }),
  shardSplitThresholdBytes: 262144,
  shardSplitStrategy: p.strategy,
  shardFanoutBits: 8,
  wrapWithDirectory: false
})
if (typeof profileArg === 'string' && profileArg.startsWith('unixfs-')) {
  const named = await rootCid({ profile: profileArg, wrapWithDirectory: false })
  if (named !== explicit) {
    throw new Error(`profile ${profileArg}: explicit parameters give ${explicit}, the library's profile ${named}`)
  }
}
process.stdout.write(explicit + '\n')

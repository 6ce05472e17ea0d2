// SPDX-License-Identifier: AGPL-3.0-only
// The buyer's side of Mercato's crypto, exactly as the Python SDK does it
// (mercato.crypto.keys and mercato.crypto.stream): derive the X25519 key from a wallet
// signature, open the sealed content key, decrypt the secretstream file, check sha256.
import { blake2b } from "@noble/hashes/blake2b";
import sodiumModule from "libsodium-wrappers-sumo";

export const KEY_DERIVATION_BLAKE2B_KEY = "Mercato X25519 key derivation v1";
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const MAGIC = "MERCENC";
const HEADER_SIZE = 68;

export async function sodium() {
  await sodiumModule.ready;
  return sodiumModule;
}

export function keyDerivationMessage(chainId) {
  return (
    "Mercato key derivation v1\n" +
    "This signature derives your Mercato decryption key. Sign it only on Mercato.\n" +
    `Chain: ${chainId}`
  );
}

export function hexToBytes(hex) {
  const clean = hex.startsWith("0x") ? hex.slice(2) : hex;
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return "0x" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// r || s || v with s in its low form and v in {27, 28} (EIP-2), as keys.py does.
export function canonicalSignature(signature) {
  const sig = hexToBytes(signature);
  if (sig.length !== 65) throw new Error("The wallet returned a signature of the wrong length.");
  let v = sig[64];
  if (v === 0 || v === 1) v += 27;
  let s = BigInt(bytesToHex(sig.slice(32, 64)));
  if (s > N / 2n) {
    s = N - s;
    v = 55 - v;
  }
  const out = new Uint8Array(65);
  out.set(sig.slice(0, 32), 0);
  out.set(hexToBytes(s.toString(16).padStart(64, "0")), 32);
  out[64] = v;
  return out;
}

// The buyer's X25519 key pair from the personal_sign signature of keyDerivationMessage.
export async function buyerKeyFromSignature(signature) {
  const na = await sodium();
  const seed = na.crypto_generichash(
    32,
    canonicalSignature(signature),
    na.from_string(KEY_DERIVATION_BLAKE2B_KEY),
  );
  return { privateKey: seed, publicKey: na.crypto_scalarmult_base(seed) };
}

// Throws unless a content key can be sealed to this X25519 public key: libsodium refuses
// the low-order points (all zeros, 01 00..00, the order-8 points...), and a purchase
// posted with one could never be delivered. mercato.crypto.validate_buyer_key, in JS.
export async function validateBuyerKey(publicKey) {
  const na = await sodium();
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) {
    throw new Error("The buyer public key must be 32 bytes.");
  }
  // Any scalar works: libsodium fails exactly for the points whose product is the identity.
  const probe = na.crypto_hash_sha256(na.from_string("Mercato buyer key probe"));
  try {
    na.crypto_scalarmult(probe, publicKey);
  } catch {
    throw new Error("This key is a low-order X25519 point that no real key pair has; nothing was bought.");
  }
  return publicKey;
}

export async function unwrapContentKey(wrappedHex, key) {
  const na = await sodium();
  try {
    return na.crypto_box_seal_open(hexToBytes(wrappedHex), key.publicKey, key.privateKey);
  } catch {
    throw new Error("The delivered key does not open with your wallet's key. Was it bought with another wallet or chain?");
  }
}

// Decrypts a Mercato encrypted stream (format v1) and returns the plaintext bytes.
export async function decryptArtifact(data, contentKey) {
  const na = await sodium();
  if (data.length < HEADER_SIZE || na.to_string(data.slice(0, 7)) !== MAGIC || data[7] !== 1) {
    throw new Error("The downloaded file is not a Mercato encrypted artifact.");
  }
  const chunkSize = new DataView(data.buffer, data.byteOffset + 8, 4).getUint32(0);
  // libsodium.js exposes no keyed BLAKE2b with a personalization over a message.
  const check = blake2b(data.slice(0, 36), {
    dkLen: 32, key: contentKey, personalization: na.from_string("Mercato-keycheck"),
  });
  if (na.to_hex(check) !== na.to_hex(data.slice(36, 68))) {
    throw new Error("The delivered key does not match this artifact.");
  }
  const state = na.crypto_secretstream_xchacha20poly1305_init_pull(data.slice(12, 36), contentKey);
  const parts = [];
  let offset = HEADER_SIZE;
  let final = false;
  const step = chunkSize + na.crypto_secretstream_xchacha20poly1305_ABYTES;
  while (offset < data.length) {
    const piece = data.slice(offset, offset + step);
    const opened = na.crypto_secretstream_xchacha20poly1305_pull(state, piece);
    if (!opened) throw new Error("The artifact was altered: a chunk failed its authentication.");
    parts.push(opened.message);
    offset += piece.length;
    final = opened.tag === na.crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    if (final && offset !== data.length) throw new Error("The artifact has bytes after its end.");
  }
  if (!final) throw new Error("The artifact is truncated.");
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export async function sha256Hex(bytes) {
  const na = await sodium();
  return na.to_hex(na.crypto_hash_sha256(bytes));
}

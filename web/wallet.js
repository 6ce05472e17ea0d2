// SPDX-License-Identifier: AGPL-3.0-only
// The only JavaScript of the marketplace: what a wallet must sign. Every page works
// for reading without it. The wallet is any EIP-1193 provider (window.ethereum); all
// chain calls go through it, so the page never needs an RPC URL of its own.
import {
  createPublicClient, createWalletClient, custom, decodeEventLog, keccak256, concat, parseAbi,
  parseUnits,
} from "viem";
import {
  buyerKeyFromSignature, bytesToHex, decryptArtifact, hexToBytes, keyDerivationMessage,
  sha256Hex, unwrapContentKey, validateBuyerKey,
} from "./crypto.js";

const ABI = {
  marketplace: parseAbi([
    "function purchase(uint256 model_id, uint256 terms, bytes32 buyer_key)",
    "function purchase_with_permit(uint256 model_id, uint256 terms, bytes32 buyer_key, uint256 permit_amount, uint256 permit_deadline, uint8 v, bytes32 r, bytes32 s)",
    "function listing(uint256 model_id) view returns (uint256 price, uint256 license_duration, bool for_sale, uint256 fee_bps)",
    "function listing_terms(uint256 model_id) view returns (bytes32)",
    "function set_agent(address agent)",
    "function agent_of(address owner) view returns (address)",
    "function withdraw() returns (uint256)",
    "function publish(bytes32 artifact_cid_digest, bytes32 plaintext_sha256, bytes32 manifest_cid_digest, uint256[] parents, uint16[] royalty_bps, uint256 price, uint256 license_duration, bytes32 terms_digest, bytes32 metadata_digest) returns (uint256)",
    "event Listed(uint256 indexed model_id, uint256 price, uint256 license_duration, bool for_sale, uint256 fee_bps)",
  ]),
  token: parseAbi(["function allowance(address owner, address spender) view returns (uint256)"]),
  registry: parseAbi([
    "function provider_url(address account) view returns (string)",
    "function set_provider(string url)",
    "function version_commitment(uint256 model_id, uint256 version) view returns (bytes32)",
  ]),
  reviews: parseAbi(["function review(uint256 model_id, uint256 rating, bytes32 text_cid_digest)"]),
};
const ZERO32 = "0x" + "00".repeat(32);
const $ = (id) => document.getElementById(id);

function say(id, text, kind = "") {
  const el = $(id);
  if (el) {
    el.textContent = text;
    el.className = `status ${kind}`;
  }
}

// Plain words for what wallets and nodes throw.
function plain(error) {
  const text = String(error?.shortMessage || error?.message || error);
  if (/rejected|denied/i.test(text)) return "You declined in your wallet. Nothing was sent.";
  if (/insufficient/i.test(text)) return "Your wallet has too little MCT or ETH for this.";
  if (/no wallet/i.test(text)) return text;
  return text.split("\n")[0];
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { "content-type": "application/json", ...(options.headers || {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || `The node answered ${response.status}.`);
  return body;
}

// The chain this node's contracts live on; a wallet on another chain is offered a switch
// (EIP-3326), or to add the chain first (EIP-3085) when it does not know it.
const CHAIN_ID = Number(document.body.dataset.chainId);
const RPC_URL = document.body.dataset.rpcUrl;
const UNKNOWN_CHAIN = 4902;

async function checkNetwork() {
  if (!window.ethereum || !CHAIN_ID) return true;
  const current = Number(await window.ethereum.request({ method: "eth_chainId" }));
  const banner = $("network");
  if (current === CHAIN_ID) {
    if (banner) banner.hidden = true;
    return true;
  }
  if (banner) {
    $("network-text").textContent = `Your wallet is on chain ${current}; this marketplace runs on chain ${CHAIN_ID}. Switch your wallet's network to buy, publish or withdraw here.`;
    banner.hidden = false;
  }
  return false;
}

async function switchNetwork() {
  const chainId = "0x" + CHAIN_ID.toString(16);
  try {
    await window.ethereum.request({ method: "wallet_switchEthereumChain", params: [{ chainId }] });
  } catch (error) {
    if (error?.code !== UNKNOWN_CHAIN || !RPC_URL) throw error;
    await window.ethereum.request({
      method: "wallet_addEthereumChain",
      params: [{
        chainId, chainName: `Mercato local chain ${CHAIN_ID}`, rpcUrls: [RPC_URL],
        nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
      }],
    });
    await window.ethereum.request({ method: "wallet_switchEthereumChain", params: [{ chainId }] });
  }
  clients = undefined;
  await checkNetwork();
}

let clients;
async function wallet() {
  if (!window.ethereum) throw new Error("No wallet found: install a browser wallet to sign.");
  if (!(await checkNetwork())) {
    throw new Error(`Your wallet is on another network: switch it to chain ${CHAIN_ID} first.`);
  }
  if (!clients) {
    const transport = custom(window.ethereum);
    const [account] = await window.ethereum.request({ method: "eth_requestAccounts" });
    const chain = await api("/v1/chain");
    clients = {
      account,
      chain,
      public: createPublicClient({ transport }),
      wallet: createWalletClient({ account, transport }),
    };
  }
  return clients;
}

// Every transaction shows in the corner with its state until it is mined.
async function sendTx(label, request) {
  const { wallet: w, public: p } = await wallet();
  const log = $("txlog");
  log.hidden = false;
  const item = document.createElement("li");
  item.className = "tx";
  item.textContent = `${label}: waiting for your wallet…`;
  $("txlist").appendChild(item);
  try {
    const hash = await w.writeContract({ ...request, chain: null });
    item.dataset.hash = hash;
    item.textContent = `${label}: pending ${hash.slice(0, 10)}…`;
    const receipt = await p.waitForTransactionReceipt({ hash, pollingInterval: 250 });
    if (receipt.status !== "success") throw new Error("The transaction was reverted.");
    item.textContent = `${label}: confirmed in block ${receipt.blockNumber}`;
    item.dataset.state = "confirmed";
    return receipt;
  } catch (error) {
    item.textContent = `${label}: failed. ${plain(error)}`;
    item.dataset.state = "failed";
    throw error;
  }
}

async function connect() {
  const { account } = await wallet();
  const { message } = await api("/v1/auth/nonce", {
    method: "POST", body: JSON.stringify({ address: account }),
  });
  const signature = await window.ethereum.request({
    method: "personal_sign", params: [bytesToHex(new TextEncoder().encode(message)), account],
  });
  await api("/v1/auth/verify", { method: "POST", body: JSON.stringify({ message, signature }) });
  location.reload();
}

let buyerKey;
async function deriveKey() {
  const { account, chain } = await wallet();
  if (!buyerKey) {
    const message = keyDerivationMessage(chain.chain_id);
    const signature = await window.ethereum.request({
      method: "personal_sign", params: [bytesToHex(new TextEncoder().encode(message)), account],
    });
    buyerKey = await buyerKeyFromSignature(signature);
  }
  return buyerKey;
}

async function buy() {
  const box = $("buybox");
  const id = BigInt(box.dataset.modelId);
  const price = BigInt(box.dataset.price);
  const duration = BigInt(box.dataset.duration || "0");
  // The licence terms this page shows: the purchase commits to their digest.
  const termsDigest = BigInt(box.dataset.termsDigest || ZERO32);
  const TERMS_SHIFT = 152n;
  const { account, chain, public: p } = await wallet();
  // The contract would take the owner's money and credit it back; say so instead.
  if (account.toLowerCase() === (box.dataset.owner || "").toLowerCase()) {
    throw new Error("You own this model: there is nothing to buy. Your own node holds its files.");
  }
  $("buy").disabled = true;
  try {
    // The purchase commits to the terms this page shows (price, license duration) and
    // the listing's fee: if the seller changes them before it is mined, it reverts.
    const [listedPrice, listedDuration, , feeBps] = await p.readContract({
      address: chain.marketplace, abi: ABI.marketplace, functionName: "listing", args: [id],
    });
    if (listedPrice > price || listedDuration !== duration) {
      throw new Error("The seller changed this listing since the page loaded. Reload the page to see its terms.");
    }
    const listedTerms = BigInt(await p.readContract({
      address: chain.marketplace, abi: ABI.marketplace, functionName: "listing_terms", args: [id],
    }));
    if (listedTerms >> TERMS_SHIFT !== termsDigest >> TERMS_SHIFT) {
      throw new Error("The seller changed this model's licence terms since the page loaded. Reload the page to read them.");
    }
    const terms = price | (duration << 96n) | (feeBps << 136n) | ((termsDigest >> TERMS_SHIFT) << TERMS_SHIFT);
    if (price === 0n) {
      await sendTx("Get free license", {
        address: chain.marketplace, abi: ABI.marketplace, functionName: "purchase",
        args: [id, terms, ZERO32],
      });
    } else {
      say("buy-status", "Sign the key message: it makes the key your purchase is delivered to.");
      const key = await deriveKey();
      await validateBuyerKey(key.publicKey); // before any token moves
      const buyerKeyHex = bytesToHex(key.publicKey);
      const allowance = await p.readContract({
        address: chain.token, abi: ABI.token, functionName: "allowance",
        args: [account, chain.marketplace],
      });
      if (allowance >= price) {
        await sendTx("Purchase", {
          address: chain.marketplace, abi: ABI.marketplace, functionName: "purchase",
          args: [id, terms, buyerKeyHex],
        });
      } else {
        say("buy-status", "Sign the permit: it lets the marketplace take exactly the price.");
        // The chain's clock, not the browser's, decides whether the permit expired.
        const deadline = Number((await p.getBlock()).timestamp) + 3600;
        const typed = await api(`/v1/chain/permit?owner=${account}&amount=${price}&deadline=${deadline}`);
        const sig = hexToBytes(await window.ethereum.request({
          method: "eth_signTypedData_v4", params: [account, JSON.stringify(typed)],
        }));
        const v = sig[64] < 27 ? sig[64] + 27 : sig[64];
        await sendTx("Purchase with permit", {
          address: chain.marketplace, abi: ABI.marketplace, functionName: "purchase_with_permit",
          args: [id, terms, buyerKeyHex, price, BigInt(deadline), v,
            bytesToHex(sig.slice(0, 32)), bytesToHex(sig.slice(32, 64))],
        });
      }
      say("buy-status", "Paid into escrow. Waiting for the seller's node to deliver your key…");
      for (let i = 0; i < 240; i++) {
        const order = await api(`/v1/orders/${account}/${id}`);
        if (order.state === "delivered") break;
        if (order.state !== "pending") throw new Error(`The order is ${order.state}.`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    say("buy-status", "Delivered. Downloading and verifying…");
    // A license holder may download again and review.
    for (const id of ["download", "review-form"]) if ($(id)) $(id).hidden = false;
    if ($("review-note")) $("review-note").hidden = true;
    $("buy").hidden = true;
    await download();
  } catch (error) {
    say("buy-status", plain(error), "error");
  } finally {
    $("buy").disabled = false;
  }
}

async function download() {
  const id = $("buybox").dataset.modelId;
  const { account, chain, public: p } = await wallet();
  try {
    const d = await api(`/v1/orders/${account}/${id}/delivery`);
    // The digests the node reports must be the ones the chain committed to.
    const onChain = await p.readContract({
      address: chain.model_registry, abi: ABI.registry, functionName: "version_commitment",
      args: [BigInt(id), BigInt(d.version)],
    });
    const mine = keccak256(concat([
      "0x" + d.artifact_cid_digest, "0x" + d.plaintext_sha256, "0x" + d.manifest_cid_digest,
    ]));
    if (mine !== onChain) throw new Error("The node reported digests the chain does not commit to.");
    const response = await fetch(`/v1/artifacts/${d.artifact_cid}`);
    if (!response.ok) throw new Error("The artifact could not be fetched from the node.");
    let bytes = new Uint8Array(await response.arrayBuffer());
    if (d.encrypted) {
      const contentKey = await unwrapContentKey(d.wrapped_key, await deriveKey());
      bytes = await decryptArtifact(bytes, contentKey);
    }
    const digest = await sha256Hex(bytes);
    if (digest !== d.plaintext_sha256) throw new Error("The decrypted file does not match its on-chain sha256.");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([bytes], { type: "application/x-tar" }));
    link.download = `model-${id}-v${d.version}.tar`;
    link.textContent = `Save ${link.download}`;
    link.id = "saved";
    link.className = "btn secondary wide";
    $("buybox").appendChild(link);
    link.click();
    say("buy-status", `Verified: sha256 ${digest.slice(0, 16)}… matches the chain. Saved ${link.download}.`, "ok");
  } catch (error) {
    say("buy-status", plain(error), "error");
  }
}

function toBase64(buffer) {
  let text = "";
  const bytes = new Uint8Array(buffer);
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

// A paid model's keys are delivered by a node's agent. A creator whose key this node
// does not hold names the node's delivering account as their agent, once; it can
// release escrow to the creator but never move tokens anywhere else.
async function ensureDeliveryAgent(account, chain, p) {
  const agent = chain.delivery_agent;
  if (!agent) throw new Error("This node has no delivering account, so nobody could receive the keys of a paid model. Publish it free, or from your own node.");
  if (agent.toLowerCase() === account.toLowerCase()) return;
  const current = await p.readContract({
    address: chain.marketplace, abi: ABI.marketplace, functionName: "agent_of", args: [account],
  });
  if (current.toLowerCase() === agent.toLowerCase()) return;
  await sendTx("Let this node deliver your keys", {
    address: chain.marketplace, abi: ABI.marketplace, functionName: "set_agent", args: [agent],
  });
}

async function publish() {
  const { account, chain, public: p } = await wallet();
  const button = $("publish");
  button.disabled = true;
  try {
    const files = Array.from($("pub-files").files);
    if (!files.length) throw new Error("Choose the package's files first.");
    const price = parseUnits($("pub-price").value || "0", 18);
    say("publish-status", "Uploading to this node…");
    const stored = await api("/v1/uploads", {
      method: "POST",
      body: JSON.stringify({
        name: $("pub-name").value,
        encrypt: price > 0n,
        price: price.toString(), // shown in the model's ERC-721 metadata
        files: await Promise.all(files.map(async (f) => ({ path: f.name, data: toBase64(await f.arrayBuffer()) }))),
      }),
    });
    const current = await p.readContract({
      address: chain.model_registry, abi: ABI.registry, functionName: "provider_url", args: [account],
    });
    if (current !== chain.provider_url) {
      await sendTx("Record provider URL", {
        address: chain.model_registry, abi: ABI.registry, functionName: "set_provider",
        args: [chain.provider_url],
      });
    }
    if (price > 0n) await ensureDeliveryAgent(account, chain, p);
    const parent = $("pub-parent").value;
    const royalty = Math.round(parseFloat($("pub-royalty").value || "0") * 100);
    const receipt = await sendTx("Publish", {
      address: chain.marketplace, abi: ABI.marketplace, functionName: "publish",
      args: ["0x" + stored.artifact_cid_digest, "0x" + stored.plaintext_sha256,
        "0x" + stored.manifest_cid_digest, parent ? [BigInt(parent)] : [], parent ? [royalty] : [],
        price, BigInt(Math.round(parseFloat($("pub-days").value || "0") * 86400)),
        "0x" + stored.terms_digest, "0x" + stored.metadata_digest],
    });
    const listed = receipt.logs
      .filter((l) => l.address.toLowerCase() === chain.marketplace.toLowerCase())
      .map((l) => { try { return decodeEventLog({ abi: ABI.marketplace, ...l }); } catch { return null; } })
      .find((e) => e && e.eventName === "Listed");
    const id = listed.args.model_id;
    $("publish-status").innerHTML = `Published as <a id="published-link" href="/models/${id}">model #${id}</a>.`;
  } catch (error) {
    say("publish-status", plain(error), "error");
  } finally {
    button.disabled = false;
  }
}

async function review() {
  const form = $("review-form");
  const { chain } = await wallet();
  try {
    await sendTx("Review", {
      address: chain.reviews, abi: ABI.reviews, functionName: "review",
      args: [BigInt(form.dataset.modelId), BigInt($("rating").value), ZERO32],
    });
    say("review-status", "Review recorded on-chain. It shows here once indexed.", "ok");
  } catch (error) {
    say("review-status", plain(error), "error");
  }
}

// The dashboard's figures, re-read from the page until the index shows the withdrawal.
async function refreshFigures(before) {
  for (let i = 0; i < 120; i++) {
    const html = await (await fetch(location.href, { headers: { accept: "text/html" } })).text();
    const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("earnings-figures");
    if (fresh && fresh.dataset.withdrawn !== before) {
      $("earnings-figures").replaceWith(fresh);
      localTimes(fresh);
      return true;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return false;
}

async function withdraw() {
  const button = $("withdraw");
  const before = $("earnings-figures").dataset.withdrawn;
  const { account, chain } = await wallet();
  if (account.toLowerCase() !== $("earnings-figures").dataset.account.toLowerCase()) {
    throw new Error("Your wallet is not this dashboard's account: only it can withdraw these earnings.");
  }
  const label = button.textContent;
  button.disabled = true;
  button.textContent = "Waiting for confirmation…";
  try {
    const receipt = await sendTx("Withdraw earnings", {
      address: chain.marketplace, abi: ABI.marketplace, functionName: "withdraw", args: [],
    });
    say("withdraw-status", `Confirmed in block ${receipt.blockNumber}. Updating the figures…`);
    const updated = await refreshFigures(before);
    say("withdraw-status", updated
      ? "Withdrawn: the tokens are in your wallet."
      : "Withdrawn. The figures update once this node's index catches up; reload in a moment.", "ok");
  } catch (error) {
    button.disabled = false;
    button.textContent = label;
    say("withdraw-status", plain(error), "error");
  }
}

// Dates arrive in UTC from the server; show them in the reader's time zone.
function localTimes(root = document) {
  for (const el of root.querySelectorAll("time.when")) {
    const date = el.querySelector(".date");
    if (!date) continue;
    el.title = date.textContent;
    date.textContent = new Date(el.getAttribute("datetime")).toLocaleString(undefined, {
      dateStyle: "medium", timeStyle: "short",
    });
    el.dataset.local = "true";
  }
}
localTimes();
checkNetwork().catch(() => {});
// A network switched in the wallet itself shows here at once.
window.ethereum?.on?.("chainChanged", () => {
  clients = undefined;
  checkNetwork().catch(() => {});
});

const ACTIONS = { connect, buy, download, publish, review, withdraw, switchNetwork };
document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-action]");
  if (!target) return;
  event.preventDefault();
  ACTIONS[target.dataset.action]().catch((error) => {
    const status = target.parentElement.querySelector(".status");
    if (status) status.textContent = plain(error);
    else alert(plain(error));
  });
});

// For tests and power users: the same derivation the SDK uses.
window.mercato = { keyDerivationMessage, buyerKeyFromSignature, decryptArtifact, sha256Hex };

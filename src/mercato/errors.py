# SPDX-License-Identifier: AGPL-3.0-only
"""Every error Mercato raises on purpose.

One root, `MercatoError`; each subclass also inherits the standard-library base that
fits, carries the data a caller needs (ids, CIDs, transaction hashes) and has a
`code`: a stable, machine-readable name that never changes meaning once released.
The message is a sentence a person can act on.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar


def local_time(timestamp: int) -> str:
    """A unix time as this machine's local date and time, e.g. "2026-12-04 16:05:00 UTC"."""
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


class MercatoError(Exception):
    """Root of every error Mercato raises on purpose."""

    code: str = "mercato_error"


# --- configuration -------------------------------------------------------------------


class ConfigError(MercatoError, ValueError):
    """A setting is missing or malformed."""

    code = "config_error"


# --- crypto (mercato.crypto) -----------------------------------------------------------


class CryptoError(MercatoError):
    """Encrypting, decrypting or delivering a content key failed."""

    code = "crypto_error"


class InvalidKeyMaterialError(CryptoError, ValueError):
    """A key, hash or signature has the wrong type or length."""

    code = "invalid_key_material"

    def __init__(
        self, what: str, expected_len: int, actual_len: int, reason: str | None = None
    ) -> None:
        self.what = what
        self.expected_len = expected_len
        self.actual_len = actual_len
        self.reason = reason
        super().__init__(
            f"The {what} is unusable: {reason}."
            if reason
            else f"The {what} must be {expected_len} bytes, got {actual_len}. "
            "Check that the value was not hex-encoded or truncated on the way."
        )


class CiphertextFormatError(CryptoError, ValueError):
    """The bytes are not a Mercato encrypted stream this version can read."""

    code = "ciphertext_format"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"Not a readable Mercato encrypted stream: {reason}. "
            "Check that you fetched the encrypted artifact, not the plaintext or another file."
        )


class WrongContentKeyError(CryptoError, ValueError):
    """The content key does not match the encrypted stream."""

    code = "wrong_content_key"

    def __init__(self) -> None:
        super().__init__(
            "This content key does not open this artifact (or the stream header was altered). "
            "Check that the key delivered for this purchase belongs to this model version."
        )


class CiphertextTamperedError(CryptoError, ValueError):
    """A chunk of an encrypted stream failed authentication: altered, reordered or lost."""

    code = "ciphertext_tampered"

    def __init__(self, chunk_index: int, detail: str | None = None) -> None:
        self.chunk_index = chunk_index
        super().__init__(
            detail
            or (
                f"Chunk {chunk_index} of the encrypted artifact failed authentication: the "
                "ciphertext was altered, reordered or corrupted. Fetch it again from the "
                "provider or another IPFS node."
            )
        )


class CiphertextTruncatedError(CiphertextTamperedError):
    """The encrypted stream ended before its final chunk."""

    code = "ciphertext_truncated"

    def __init__(self, chunk_index: int) -> None:
        super().__init__(
            chunk_index,
            f"The encrypted artifact ends at chunk {chunk_index} without its final chunk: the "
            "download was cut short (or its last chunk was altered). Fetch it again.",
        )


class PlaintextHashMismatchError(CryptoError, ValueError):
    """The decrypted bytes do not hash to the sha256 the chain commits to."""

    code = "plaintext_hash_mismatch"

    def __init__(self, expected: bytes, actual: bytes) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"The decrypted artifact has sha256 {actual.hex()}, but the chain commits to "
            f"{expected.hex()}. Nothing was written. The seller encrypted other bytes than it "
            "published, or you are checking against the wrong model version."
        )


class KeyUnwrapError(CryptoError, ValueError):
    """A wrapped content key could not be opened with this buyer key."""

    code = "key_unwrap_failed"

    def __init__(self) -> None:
        super().__init__(
            "The wrapped content key cannot be opened with this wallet's decryption key. "
            "Sign the key-derivation message with the wallet that made the purchase, "
            "on the same chain."
        )


class WalletSignatureError(CryptoError, ValueError):
    """A wallet returned a signature that cannot be used to derive a key."""

    code = "wallet_signature_invalid"

    def __init__(self, reason: str, address: str | None = None) -> None:
        self.reason = reason
        self.address = address
        super().__init__(
            f"The wallet signature cannot derive a decryption key: {reason}. "
            "Sign the exact Mercato key-derivation message with a personal_sign (EIP-191) "
            "wallet."
        )


# --- models: packages, validation, try-runtime ----------------------------------------


class ModelPackageError(MercatoError, ValueError):
    """A model package cannot be accepted as it is."""

    code = "model_package_invalid"

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        super().__init__(message)


class ModelCardError(ModelPackageError):
    """The model card (README.md with YAML front matter) is missing or malformed."""

    code = "model_card_invalid"


class ModelLicenseError(ModelCardError):
    """The model card names no license, or one neither the Hub documents nor SPDX knows."""

    code = "model_card_license"

    def __init__(self, message: str, *, path: str = "", license: str | None = None) -> None:
        self.license = license
        super().__init__(message, path=path)


class CardSectionsMissingError(ModelCardError):
    """A paid model's card lacks a section a buyer must read (intended uses, limitations)."""

    code = "model_card_sections_missing"
    # What to add, in the words of the Hugging Face Hub's card template.
    HOW_TO_ADD: ClassVar[dict[str, str]] = {
        "intended uses": "'## Uses' (or '## Intended uses & limitations') saying what the "
        "model is for",
        "limitations": "'## Bias, Risks, and Limitations' saying where it fails or must not "
        "be used",
    }

    def __init__(
        self, missing: tuple[str, ...], *, path: str = "", model_id: int | None = None
    ) -> None:
        self.missing = missing
        self.model_id = model_id
        adds = " and ".join(self.HOW_TO_ADD.get(name, f"a '{name}' section") for name in missing)
        subject = f"Model {model_id}'s card" if model_id is not None else "The model card"
        super().__init__(
            f"{subject} has no {' and no '.join(missing)} section, which a buyer must read "
            f"before paying. Add to README.md {adds}, or publish it free (price 0).",
            path=path,
        )


class UnsafeModelFormatError(ModelPackageError):
    """A file is in a format that can run code when loaded (pickle, Keras Lambda, ...)."""

    code = "model_format_unsafe"

    def __init__(self, message: str, *, path: str, format: str) -> None:
        self.format = format
        super().__init__(message, path=path)


class OnnxModelError(ModelPackageError):
    """The ONNX entry is missing, does not parse or fails `onnx.checker`."""

    code = "model_onnx_invalid"


class PackagePathError(ModelPackageError):
    """A path escapes the package (`..`, absolute path, symlink out) or does not exist."""

    code = "model_path_outside"

    def __init__(self, message: str, *, path: str, location: str) -> None:
        self.location = location
        super().__init__(message, path=path)


class ModelTooLargeError(ModelPackageError):
    """A file, the whole package or the file count is over its limit."""

    code = "model_too_large"

    def __init__(self, message: str, *, path: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(message, path=path)


class ManifestError(ModelPackageError):
    """A manifest does not match the published manifest JSON Schema."""

    code = "model_manifest_invalid"


class InferenceError(MercatoError, RuntimeError):
    """A try-call could not produce outputs."""

    code = "inference_error"


class InferenceInputError(InferenceError, ValueError):
    """A try-call's input does not match the model's manifest; nothing was run."""

    code = "inference_input_invalid"

    def __init__(self, message: str, *, input_name: str = "") -> None:
        self.input_name = input_name
        super().__init__(message)


class InferenceInputShapeError(InferenceInputError):
    """An input's rank or dimensions do not match the manifest."""

    code = "inference_input_shape"


class InferenceInputTypeError(InferenceInputError, TypeError):
    """An input's element type does not match the manifest."""

    code = "inference_input_dtype"


class InferenceInputNonFiniteError(InferenceInputError):
    """An input holds NaN or infinity where the model or the policy does not allow it."""

    code = "inference_input_non_finite"


class InferenceInputTooLargeError(InferenceInputError):
    """A try-call's request or tensors are over the size limit."""

    code = "inference_input_too_large"

    def __init__(self, message: str, *, input_name: str = "", size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(message, input_name=input_name)


class InferenceTimeoutError(InferenceError, TimeoutError):
    """A try-call ran past its time limit; its worker was killed and replaced."""

    code = "inference_timeout"

    def __init__(self, message: str, *, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(message)


class InferenceMemoryError(InferenceError, MemoryError):
    """A try-call needed more memory than the worker may use; the worker was replaced."""

    code = "inference_out_of_memory"

    def __init__(self, message: str, *, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        super().__init__(message)


class InferenceWorkerCrashedError(InferenceError):
    """The worker process died during a try-call; it was replaced."""

    code = "inference_worker_crashed"

    def __init__(self, message: str, *, exitcode: int | None) -> None:
        self.exitcode = exitcode
        super().__init__(message)


class InferenceRunError(InferenceError):
    """ONNX Runtime refused the model or failed while running it."""

    code = "inference_run_failed"


class InferencePoolClosedError(InferenceError):
    """The try-runtime pool is closed or was never started."""

    code = "inference_pool_closed"


class TryAnswerError(InferenceError, ValueError):
    """A try answer (perhaps from another node) is not JSON shaped as the try API answers."""

    code = "try_answer_invalid"


# --- storage (mercato.storage) ---------------------------------------------------------


class StorageError(MercatoError):
    """Root of the content-addressed storage errors."""

    code = "storage_error"


class InvalidCIDError(StorageError, ValueError):
    """A string or byte sequence is not a CID Mercato can use."""

    code = "invalid_cid"

    def __init__(self, message: str, *, value: str) -> None:
        self.value = value
        super().__init__(message)


class BlockNotFoundError(StorageError, LookupError):
    """A block is not in the store (or the backend) that was asked for it."""

    code = "block_not_found"

    def __init__(self, message: str, *, cid: str) -> None:
        self.cid = cid
        super().__init__(message)


class BlockHashMismatchError(StorageError, ValueError):
    """Bytes read or received for a CID do not hash to that CID."""

    code = "block_hash_mismatch"

    def __init__(self, message: str, *, cid: str, source: str) -> None:
        self.cid = cid
        self.source = source
        super().__init__(message)


class BlockTooLargeError(StorageError, ValueError):
    """A block is larger than the limit every IPFS peer accepts."""

    code = "block_too_large"

    def __init__(self, message: str, *, cid: str | None, size: int, limit: int) -> None:
        self.cid = cid
        self.size = size
        self.limit = limit
        super().__init__(message)


class DagFormatError(StorageError, ValueError):
    """A block is not valid dag-pb / UnixFS, or the DAG does not describe a file."""

    code = "dag_format_error"

    def __init__(self, message: str, *, cid: str | None) -> None:
        self.cid = cid
        super().__init__(message)


class CarFormatError(StorageError, ValueError):
    """A CAR stream is malformed (bad header, bad section, unsupported version)."""

    code = "car_format_error"

    def __init__(self, message: str, *, offset: int) -> None:
        self.offset = offset
        super().__init__(message)


class CarTruncatedError(CarFormatError):
    """A CAR stream ends in the middle of its header or of a block section."""

    code = "car_truncated"


class BlockWriteError(StorageError, OSError):
    """The blockstore could not write a block; nothing partial was left behind."""

    code = "block_write_failed"

    def __init__(self, message: str, *, path: str, errno_code: int | None) -> None:
        self.path = path
        self.errno_code = errno_code
        super().__init__(message)


class StorageFullError(BlockWriteError):
    """The disk (or quota) holding the blockstore filled up during a write."""

    code = "storage_full"


class StorageBackendError(StorageError, ConnectionError):
    """A remote backend (kubo RPC, IPFS gateway) failed or answered unexpectedly."""

    code = "storage_backend_error"

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(message)


class ReadOnlyBackendError(StorageError, PermissionError):
    """A write (add, pin) was asked of a backend that can only read, like a gateway."""

    code = "read_only_backend"

    def __init__(self, message: str, *, backend: str) -> None:
        self.backend = backend
        super().__init__(message)


class UnsupportedImportEntryError(StorageError, ValueError):
    """A directory being imported holds something UnixFS cannot record: a device, a
    socket or a FIFO, a name that is not UTF-8, nesting past the depth limit, or names
    whose HAMT hashes collide beyond the hash's 64 bits."""

    code = "unsupported_import_entry"

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(message)


class UnsafeURLError(StorageError, PermissionError):
    """A URL someone else chose points where this node must not connect (a private,
    loopback, link-local, multicast or unspecified address, or a scheme other than http)."""

    code = "unsafe_url"

    def __init__(self, message: str, *, url: str, host: str) -> None:
        self.url = url
        self.host = host
        super().__init__(message)


class FetchTooLargeError(StorageError, ValueError):
    """A remote answer went past the bytes this fetch may take; the rest was not read."""

    code = "fetch_too_large"

    def __init__(self, message: str, *, host: str, limit: int) -> None:
        self.host = host
        self.limit = limit
        super().__init__(message)


class CarUnexpectedBlockError(CarFormatError):
    """A CAR stream carries a block that is not part of the DAG that was asked for."""

    code = "car_unexpected_block"

    def __init__(self, message: str, *, offset: int, cid: str, root: str) -> None:
        self.cid = cid
        self.root = root
        super().__init__(message, offset=offset)


# --- chain ---------------------------------------------------------------------------


class ChainError(MercatoError):
    """Something went wrong talking to the EVM chain."""

    code = "chain_error"


class ChainUnavailableError(ChainError, ConnectionError):
    """The JSON-RPC endpoint does not answer."""

    code = "chain_unavailable"

    def __init__(self, rpc_url: str, detail: str) -> None:
        self.rpc_url = rpc_url
        # Hosted providers put API keys in the path, and HTTP errors repeat the path.
        secret = rpc_url.split("://", 1)[-1].partition("/")[2]
        if len(secret) > 1:
            detail = detail.replace(secret, "…")
        super().__init__(
            f"Cannot reach the chain at {rpc_origin(rpc_url)}: {detail}. Check that a node "
            "is running "
            "('mercato node up' on this data directory), or that the RPC URL is right "
            "(rpc_url in config.toml, or MERCATO_RPC_URL)."
        )


class TransactionFailedError(ChainError):
    """A transaction was mined but reverted."""

    code = "transaction_failed"

    def __init__(self, tx_hash: str, reason: str) -> None:
        self.tx_hash = tx_hash
        self.reason = reason
        super().__init__(f"Transaction {tx_hash} failed: {reason}.")


class TransactionNotMinedError(TransactionFailedError):
    """A transaction was sent but not mined in time; it may still be mined later."""

    code = "transaction_not_mined"

    def __init__(self, tx_hash: str, waited: float) -> None:
        self.waited = waited
        ChainError.__init__(
            self,
            f"Transaction {tx_hash} was sent but not mined within {waited:g} s; it may still "
            "be mined (a low fee or a busy chain). Look it up by its hash before sending it "
            "again, so it is not done twice.",
        )
        self.tx_hash = tx_hash
        self.reason = "not mined in time"


class ContractRevertError(ChainError):
    """A contract call reverted; `reason` is the contract's own words."""

    code = "contract_revert"

    def __init__(self, reason: str, function: str) -> None:
        self.reason = reason
        self.function = function
        super().__init__(f"{function} was refused by the contract: {reason}.")


class NoGasError(ChainError, ValueError):
    """The account holds none of the chain's native currency to pay for gas."""

    code = "no_gas"

    def __init__(self, address: str, action: str, local_chain: bool) -> None:
        self.address, self.action = address, action
        hint = (
            "Run 'mercato wallet faucet' (local chain) to get gas and test MCT."
            if local_chain
            else "Send it some of this chain's native currency (ETH on most chains) first."
        )
        super().__init__(f"{address} has no currency to pay gas to {action}. {hint}")


class DeploymentError(ChainError, ValueError):
    """Contracts cannot be deployed or found as asked."""

    code = "deployment_error"


class EvmVersionError(DeploymentError):
    """The chain's EVM predates Cancun, whose opcodes the compiled contracts use."""

    code = "evm_version_unsupported"

    def __init__(self, chain_id: int, detail: str) -> None:
        self.chain_id = chain_id
        self.detail = detail
        super().__init__(
            f"Chain {chain_id} does not run the Cancun EVM (MCOPY, TSTORE, TLOAD, "
            f"BLOBBASEFEE), which Mercato's contracts need ({detail}); nothing was "
            "deployed. Use a chain or node version with the Cancun upgrade (Ethereum since "
            "March 2024, current Anvil, Hardhat or geth), or start the node with its "
            "hardfork set to cancun or later."
        )


class AnvilError(ChainError, RuntimeError):
    """The local Anvil node cannot be found or started."""

    code = "anvil_error"


def rpc_origin(rpc_url: str) -> str:
    """An RPC URL without its path or query, where hosted providers put API keys."""
    scheme, _, rest = rpc_url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}" if rest else "the RPC endpoint"


class RpcRetryExhaustedError(ChainUnavailableError):
    """The RPC provider kept failing (rate limit, server error, dropped connection)."""

    code = "rpc_retries_exhausted"

    def __init__(self, method: str, attempts: int, detail: str, *, rpc_url: str = "") -> None:
        self.method, self.attempts, self.detail = method, attempts, detail
        self.rpc_url = rpc_url
        ChainError.__init__(
            self,
            f"The chain's RPC provider at {rpc_origin(rpc_url)} failed {method} {attempts} "
            f"times in a row (last: {detail}). It may be rate-limiting this node: try again "
            "later, or use a provider plan or endpoint with higher limits (rpc_url).",
        )


class LogQueryError(ChainError, ValueError):
    """The RPC provider refused an `eth_getLogs` query, even split to one block."""

    code = "log_query_refused"

    def __init__(self, from_block: int, to_block: int, detail: str) -> None:
        self.from_block, self.to_block, self.detail = from_block, to_block, detail
        super().__init__(
            f"The chain's RPC provider refused the logs of blocks {from_block}-{to_block} "
            f"({detail}). Use an RPC endpoint that serves eth_getLogs (an archive or "
            "full node, or a provider plan without this limit) in rpc_url."
        )


class RpcAnswerTooLargeError(ChainError):
    """An RPC answer was larger than the node reads from a provider."""

    code = "rpc_answer_too_large"

    def __init__(self, method: str, limit: int, *, rpc_url: str = "") -> None:
        self.method, self.limit, self.rpc_url = method, limit, rpc_url
        super().__init__(
            f"The chain's RPC provider at {rpc_origin(rpc_url)} answered {method} with more "
            f"than {limit:,} bytes, more than Mercato reads from a provider. Use a "
            "provider you trust in rpc_url; log queries ask for smaller ranges on their own."
        )


# --- index (mercato.index) -------------------------------------------------------------


class IndexingError(MercatoError):
    """The marketplace index cannot be read, written or brought up to date."""

    code = "index_error"


class IndexDatabaseError(IndexingError, RuntimeError):
    """The index database cannot be opened or migrated."""

    code = "index_database"


class IndexDeploymentMismatchError(IndexingError, ValueError):
    """The index database was built for another chain or other contracts."""

    code = "index_deployment_mismatch"


class IndexRpcError(IndexingError, ConnectionError):
    """The chain's JSON-RPC endpoint failed while the index read logs or blocks."""

    code = "index_rpc"


class InvalidSearchQueryError(IndexingError, ValueError):
    """A search query or pagination cursor is malformed."""

    code = "invalid_search_query"


class IndexedModelNotFoundError(IndexingError, LookupError):
    """No model with this id is in the index (yet)."""

    code = "indexed_model_not_found"

    def __init__(self, model_id: int) -> None:
        self.model_id = model_id
        super().__init__(
            f"Model {model_id} is not in the index. It may not exist, or the index has not "
            "caught up with the chain yet: wait a few seconds and try again."
        )


class IndexedTaskNotFoundError(IndexingError, LookupError):
    """No federated training task with this id is in the index (yet)."""

    code = "indexed_task_not_found"

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        super().__init__(
            f"Task {task_id} is not in the index. It may not exist, or the index has not "
            "caught up with the chain yet: wait a few seconds and try again ('mercato fl "
            "list' shows the tasks)."
        )


# --- federation (mercato.federation) --------------------------------------------------


class FederationError(MercatoError):
    """A federated training task cannot go on as asked."""

    code = "federation_error"


class FederationSpecError(FederationError, ValueError):
    """A federated task's spec (or a setting in it) is not one Mercato can run."""

    code = "federation_spec_invalid"


class InitialModelError(FederationSpecError):
    """The registry model a task's spec starts from cannot be used (nothing was sent)."""

    code = "federation_initial_model"

    def __init__(self, model_id: int, version: int, reason: str) -> None:
        self.model_id, self.version, self.reason = model_id, version, reason
        super().__init__(
            f"The task's initial model {model_id} version {version} cannot be used: {reason}."
        )


class InitialModelLicenseError(InitialModelError, PermissionError):
    """The task starts from a paid model this account holds no usable licence for."""

    code = "federation_initial_model_licence"

    def __init__(
        self,
        model_id: int,
        version: int,
        account: str | None,
        *,
        delivered_version: int | None = None,
    ) -> None:
        self.account, self.delivered_version = account, delivered_version
        if account is None:
            reason = "it is paid and no account is unlocked; pass --account with a licence"
        elif delivered_version is not None:
            reason = (
                f"the key delivered to {account} opens version {delivered_version} only; "
                f"set [initial_model] version = {delivered_version}"
            )
        else:
            reason = (
                f"it is paid and {account} holds no licence for it; buy it first with "
                f"'mercato buy {model_id}' (the requester's node opens it with that licence)"
            )
        super().__init__(model_id, version, reason)


class LocalDataError(FederationError, ValueError):
    """A data owner's file does not match the task's input schema (nothing was sent)."""

    code = "federation_local_data"

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"{self.path} cannot be used for this task: {reason}. Nothing was sent; fix "
            "the file to match the task's [input] schema ('mercato fl show TASK' prints it)."
        )


class FederationAppRefusedError(FederationError, PermissionError):
    """A SuperNode was asked to run an app other than Mercato's own pinned client app."""

    code = "federation_app_refused"

    def __init__(self, fab_hash: str, expected: str) -> None:
        self.fab_hash = fab_hash
        self.expected = expected
        super().__init__(
            f"Refused to run Flower app {fab_hash[:16]}...: a data owner runs only the "
            f"client app shipped in the mercato package ({expected[:16]}...). The "
            "coordinator sent other code; do not trust it with your data."
        )


class FederationRuntimeError(FederationError, RuntimeError):
    """A SuperLink or SuperNode process could not start or stopped unexpectedly."""

    code = "federation_runtime"

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"The {what} failed: {reason}.")


class NothingToClaimError(FederationError, ValueError):
    """A task owes the account nothing now (not ended yet, claimed already, never joined,
    or its seat's share at finalize was 0, which forfeits the stake)."""

    code = "federation_nothing_to_claim"

    def __init__(self, task_id: int, account: str) -> None:
        self.task_id, self.account = task_id, account
        super().__init__(
            f"Task {task_id} owes {account} nothing now: it has not ended, this account "
            "claimed already or never took part, or its share at finalize was 0 (a seat "
            f"with no share forfeits its stake). 'mercato fl status {task_id}' shows where "
            "it stands and each seat's share."
        )


class FederationPrivacyError(FederationError, PermissionError):
    """A participant refused a request that would weaken its task's privacy."""

    code = "federation_privacy_refused"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"Refused: {reason}. No update was sent. The task's privacy comes from its "
            "on-chain spec; a coordinator asking for less is not to be trusted with your data."
        )


class FederationCheckpointError(FederationError, ValueError):
    """A round checkpoint in the data dir is damaged or belongs to another task."""

    code = "federation_checkpoint"

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"The checkpoint {self.path} cannot be used: {reason}. Move it aside to "
            "start the task's rounds again from the last round committed on-chain."
        )


class FederationNotDeployedError(DeploymentError):
    """The deployment record names no federation contract (it predates federated tasks)."""

    code = "federation_not_deployed"

    def __init__(self, chain_id: int) -> None:
        self.chain_id = chain_id
        super().__init__(
            f"The Mercato deployment recorded for chain {chain_id} has no federation "
            "contract: it was deployed before federated training existed. On a local chain, "
            "start a node on a new data directory ('mercato node up' deploys every contract); "
            "on a shared network, get a deployment record that names one from its operator "
            "('mercato node up --deployment FILE')."
        )


class FederationTaskNotFoundError(FederationError, LookupError):
    """No federated task has this id on the chain."""

    code = "federation_task_not_found"

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        super().__init__(
            f"There is no federated task {task_id} on this chain; 'mercato fl list' shows "
            "the tasks."
        )


class FederationInputError(FederationError, ValueError):
    """A federated task call was asked for something the task or contract cannot take
    (nothing was sent)."""

    code = "federation_input"

    def __init__(self, message: str, *, task_id: int | None = None) -> None:
        self.task_id = task_id
        super().__init__(message)


class NodeKeyTakenError(FederationInputError):
    """A training node key is registered on-chain to another account."""

    code = "federation_node_key_taken"

    def __init__(self, node_key_hash: bytes, owner: str) -> None:
        self.node_key_hash = node_key_hash
        self.owner = owner
        super().__init__(
            f"The training node key 0x{node_key_hash.hex()[:16]}... is registered to "
            f"{owner}, not to you (someone may have copied it from your transaction). "
            "Make a new node key and join with it; nothing was staked."
        )


class FederationEvidenceError(FederationError, ValueError):
    """A scored task's published round evidence disagrees with the chain, the spec, the
    validation set or a participant's own recomputation: the coordinator lied or erred."""

    code = "federation_evidence_mismatch"

    def __init__(self, task_id: int, round_number: int, reason: str) -> None:
        self.task_id = task_id
        self.round = round_number
        self.reason = reason
        where = f"round {round_number}" if round_number else "the shares"
        super().__init__(
            f"Task {task_id}, {where}: {reason}. The coordinator's published evidence does "
            "not hold; keep this output as proof and report the task's coordinator."
        )


class OwnUpdateMismatchError(FederationEvidenceError):
    """A participant's check of its own line of a round's evidence against the update
    its node kept (the exact one it sent, noise included): the coordinator scored
    another update for the seat, or published another score than that update earns."""

    code = "federation_own_update_mismatch"


class ValidationSetUnavailableError(FederationError, LookupError):
    """A scored task's validation set is not revealed (or not here), so it cannot be used."""

    code = "federation_validation_unavailable"

    def __init__(self, task_id: int, reason: str) -> None:
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"Task {task_id}'s validation set cannot be had: {reason}.")


class ValidationSetMismatchError(FederationError, ValueError):
    """A file offered as a task's validation set is not the one its spec committed to."""

    code = "federation_validation_mismatch"

    def __init__(self, task_id: int, expected: str, got: str) -> None:
        self.task_id = task_id
        self.expected = expected
        self.got = got
        super().__init__(
            f"This file is not task {task_id}'s validation set: its CID is {got}, the spec "
            f"committed to {expected}. Use the file the requester revealed ('mercato fl "
            f"verify {task_id}' without --validation fetches it)."
        )


# --- moderation (mercato.moderation) ----------------------------------------------------


class ModerationError(MercatoError):
    """A node's denylists or moderation settings cannot be read or changed."""

    code = "moderation_error"


class ModerationTargetError(ModerationError, ValueError):
    """What to deny or allow is not a model id, a creator address or a CID."""

    code = "moderation_target"

    def __init__(self, target: str) -> None:
        self.target = target
        super().__init__(
            f"{target[:100]!r} is neither a model id (42), a creator address (0x...) nor a "
            "CID (bafy..., Qm...). Give one of those."
        )


class DenylistFormatError(ModerationError, ValueError):
    """A denylist (IPIP-383 compact format) has a line or header it cannot read."""

    code = "denylist_format"

    def __init__(self, line: int, detail: str) -> None:
        self.line, self.detail = line, detail
        where = f"line {line}" if line else "a rule"
        super().__init__(
            f"Denylist {where}: {detail}. Fix or remove it; the format is the IPFS compact "
            "denylist (IPIP-383)."
        )


class DenylistTooLargeError(ModerationError, ValueError):
    """A denylist is bigger than a node reads (bytes, line length or number of rules)."""

    code = "denylist_too_large"

    def __init__(self, what: str, limit: str) -> None:
        self.what, self.limit = what, limit
        super().__init__(
            f"The denylist is too large: {what} is over the limit of {limit}. Nothing of it "
            "was used; split the list or ask its publisher for a smaller one."
        )


class SubscriptionNotFoundError(ModerationError, LookupError):
    """No denylist subscription has that URL or CID."""

    code = "subscription_not_found"

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(
            f"This node has no denylist subscription {source[:200]!r}; "
            "'mercato moderation list' shows the subscriptions."
        )


class DeniedError(ModerationError, PermissionError):
    """This node's operator chose not to serve a model or a CID (its denylists)."""

    code = "denied"

    def __init__(self, subject: str, reason: str, *, model_id: int | None = None) -> None:
        self.subject, self.reason, self.model_id = subject, reason, model_id
        why = f": {reason}" if reason else ""
        super().__init__(
            f"This node does not serve {subject}{why}. Its operator denied it; other nodes "
            "decide for themselves, and the chain keeps the record."
        )


# --- market: the SDK's models, orders and reviews ---------------------------------------


class MarketError(MercatoError):
    """A market operation cannot go ahead."""

    code = "market_error"


class NoAccountError(ConfigError):
    """An operation needs an account and none is configured."""

    code = "no_account"

    def __init__(self, action: str) -> None:
        super().__init__(
            f"Cannot {action} without an account. Create one with 'mercato wallet new' "
            "or pass --account."
        )


class ModelNotFoundError(MarketError, LookupError):
    """No model has this id on this chain."""

    code = "model_not_found"

    def __init__(self, model_id: int) -> None:
        self.model_id = model_id
        super().__init__(
            f"Model {model_id} does not exist on this chain. Run 'mercato search' to find models."
        )


class VersionNotFoundError(MarketError, LookupError):
    """The model has no such version."""

    code = "version_not_found"

    def __init__(self, model_id: int, version: int, latest: int) -> None:
        self.model_id, self.version, self.latest = model_id, version, latest
        super().__init__(
            f"Model {model_id} has no version {version}; its versions are 1 to {latest}."
        )


class VersionDeprecatedError(MarketError, ValueError):
    """The version asked for is deprecated by its creator."""

    code = "version_deprecated"

    def __init__(self, model_id: int, version: int) -> None:
        self.model_id, self.version = model_id, version
        super().__init__(
            f"Version {version} of model {model_id} is deprecated by its creator; nothing was "
            "bought. Buy the latest version, or ask the creator for a current one."
        )


class NotForSaleError(MarketError, ValueError):
    """The model is not listed for sale."""

    code = "not_for_sale"

    def __init__(self, model_id: int) -> None:
        self.model_id = model_id
        super().__init__(f"Model {model_id} is not for sale right now; nothing was bought.")


class InsufficientBalanceError(MarketError, ValueError):
    """The buyer does not hold enough tokens for the price."""

    code = "insufficient_balance"

    def __init__(self, balance: int, price: int, local_chain: bool) -> None:
        self.balance, self.price = balance, price
        hint = " Run 'mercato wallet faucet' on a local chain." if local_chain else ""
        super().__init__(
            f"Not enough MCT: balance {balance / 10**18:g}, price {price / 10**18:g}.{hint}"
        )


class AlreadyLicensedError(MarketError, ValueError):
    """The buyer already holds a license or has a purchase pending."""

    code = "already_licensed"

    def __init__(self, model_id: int, pending: bool) -> None:
        self.model_id = model_id
        what = "a purchase of it is already pending" if pending else "you already hold a license"
        super().__init__(f"Model {model_id}: {what}; nothing was bought.")


class LicenseRequiredError(MarketError, PermissionError):
    """The account holds no license for the model."""

    code = "license_required"

    def __init__(self, model_id: int, account: str) -> None:
        self.model_id, self.account = model_id, account
        super().__init__(
            f"{account} holds no license for model {model_id}. Buy it first with "
            f"'mercato buy {model_id}'."
        )


class DeliveryTimeoutError(MarketError, TimeoutError):
    """The seller's node has not delivered the key yet."""

    code = "delivery_timeout"

    def __init__(self, model_id: int, deadline: int) -> None:
        self.model_id, self.deadline = model_id, deadline
        super().__init__(
            f"The key for model {model_id} has not been delivered yet. Wait, or after "
            f"{local_time(deadline)} take your tokens back with 'mercato refund {model_id}'."
        )


class ProviderUnavailableError(MarketError, ConnectionError):
    """The creator's provider URL does not answer as it should."""

    code = "provider_unavailable"

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        super().__init__(
            f"The model's provider at {url} cannot serve it ({detail}). Try again later, or "
            "fetch the CID from any IPFS gateway with --gateway."
        )


class DownloadError(MarketError):
    """A download cannot be completed; nothing was written."""

    code = "download_failed"


class ArtifactTooLargeError(DownloadError, ValueError):
    """An artifact (or its unpacked package) is larger than it may be; nothing was kept."""

    code = "artifact_too_large"

    def __init__(self, message: str, *, cid: str, size: int, limit: int) -> None:
        self.cid = cid
        self.size = size
        self.limit = limit
        super().__init__(message)


class UnsafeArchiveError(DownloadError, ValueError):
    """A package archive holds a link, a device, a path outside its folder, or too many
    members; nothing was unpacked."""

    code = "archive_unsafe"

    def __init__(self, message: str, *, member: str) -> None:
        self.member = member
        super().__init__(message)


class ContentKeyMissingError(MarketError, LookupError):
    """This node does not hold the content key of an artifact it should sell."""

    code = "content_key_missing"

    def __init__(self, artifact_cid: str) -> None:
        self.artifact_cid = artifact_cid
        super().__init__(
            f"No content key for artifact {artifact_cid} in this node's data directory; "
            "it cannot deliver keys for it. Run the node with the data directory it was "
            "published from."
        )


class ContentKeyNotBoundError(ContentKeyMissingError):
    """This node holds a key for the artifact, but not one stored for this model and its
    current owner: it neither delivers nor serves that model (a copycat listing that
    commits to another model's digests, or a model that changed hands)."""

    code = "content_key_not_bound"

    def __init__(self, artifact_cid: str, model_id: int, version: int, owner: str) -> None:
        self.model_id, self.version, self.owner = model_id, version, owner
        MarketError.__init__(
            self,
            f"This node holds no key stored by {owner} for model {model_id} version "
            f"{version} (artifact {artifact_cid}); it neither delivers nor serves it. The "
            "owner must publish from this node, or publish a new version through it after "
            "a transfer.",
        )
        self.artifact_cid = artifact_cid


class OwnModelError(MarketError, ValueError):
    """The buyer owns the model: there is nothing to buy."""

    code = "own_model"

    def __init__(self, model_id: int, owner: str) -> None:
        self.model_id, self.owner = model_id, owner
        super().__init__(
            f"You ({owner}) own model {model_id}; nothing was bought. Download it without "
            f"buying: 'mercato download {model_id} DEST'."
        )


class UnencryptedVersionError(MarketError, ValueError):
    """A price was asked for a model whose latest version is stored in the clear."""

    code = "version_unencrypted"

    def __init__(self, model_id: int, version: int) -> None:
        self.model_id, self.version = model_id, version
        super().__init__(
            f"Model {model_id}'s latest version ({version}) was published free, so its bytes "
            "are public in the clear and there is no key to deliver to buyers; the price was "
            f"not set. Publish an encrypted version first ('mercato version add {model_id} "
            "DIR --encrypt'), then set the price."
        )


class EncryptedVersionError(MarketError, ValueError):
    """A model was to be made free while its latest version is encrypted."""

    code = "version_encrypted"

    def __init__(self, model_id: int, version: int) -> None:
        self.model_id, self.version = model_id, version
        super().__init__(
            f"Model {model_id}'s latest version ({version}) is encrypted, and a free license "
            "delivers no key, so nobody could open it; the price was not changed. Publish a "
            f"version in the clear first ('mercato version add {model_id} DIR --no-encrypt'), "
            "then make it free."
        )


class ListingChangedError(MarketError, ValueError):
    """The listing changed between the buyer reading it and the purchase being mined."""

    code = "listing_changed"

    def __init__(self, model_id: int) -> None:
        self.model_id = model_id
        super().__init__(
            f"Model {model_id}'s listing no longer matches the terms your purchase agreed "
            "to (its price is above your maximum, or its license duration or fee changed); "
            f"nothing was paid. Check the terms with 'mercato show {model_id}' and buy again."
        )


class LicenseTermsChangedError(MarketError, ValueError):
    """The licence terms the buyer read are not the ones the listing commits to."""

    code = "license_terms_changed"

    def __init__(self, model_id: int, terms_digest: bytes) -> None:
        self.model_id, self.terms_digest = model_id, terms_digest
        super().__init__(
            f"Model {model_id}'s listing commits to other licence terms than the ones read "
            f"for this purchase (digest {terms_digest.hex()[:16]}…): the owner changed them, "
            "or the card that was read is not the latest version's. Nothing was paid. Read "
            f"the terms again with 'mercato show {model_id}' and buy again."
        )


class RefundTooEarlyError(MarketError, ValueError):
    """The purchase's delivery deadline has not passed yet."""

    code = "refund_too_early"

    def __init__(self, model_id: int, deadline: int) -> None:
        self.model_id, self.deadline = model_id, deadline
        super().__init__(
            f"The seller of model {model_id} may still deliver the key until "
            f"{local_time(deadline)}; nothing was refunded. Run 'mercato refund {model_id}' "
            "after that time if it is still not delivered."
        )


class NothingToWithdrawError(MarketError, ValueError):
    """The account has no earnings waiting in the marketplace."""

    code = "nothing_to_withdraw"

    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(
            f"{account} has no earnings to withdraw; nothing was sent. "
            "'mercato earnings' lists what sales have credited."
        )


class FaucetUnavailableError(MarketError, RuntimeError):
    """The faucet cannot fund the account on this chain."""

    code = "faucet_unavailable"

    def __init__(self, chain_id: int, reason: str) -> None:
        self.chain_id, self.reason = chain_id, reason
        super().__init__(reason)


class NotConfirmedError(MercatoError, RuntimeError):
    """An action that spends or moves tokens was not confirmed."""

    code = "not_confirmed"

    def __init__(self, action: str, *, asked: bool) -> None:
        self.action, self.asked = action, asked
        super().__init__(
            f"Nothing was done: you did not confirm that you want to {action}."
            if asked
            else f"Nothing was done: confirm that you want to {action} by adding --yes "
            "(there is no terminal to ask on)."
        )


# --- wallets (mercato.wallet) ----------------------------------------------------------


class WalletError(MercatoError):
    """Root of the keystore and password errors."""

    code = "wallet_error"


class KeystoreNotFoundError(WalletError, LookupError):
    """No keystore file in the keystore directory holds this address."""

    code = "keystore_not_found"

    def __init__(self, address: str, keystore_dir: str) -> None:
        self.address = address
        self.keystore_dir = keystore_dir
        super().__init__(
            f"No keystore for {address} in {keystore_dir}. Run 'mercato wallet list' to see "
            "your accounts, or 'mercato wallet import' to add this one."
        )


class NoDefaultAccountError(WalletError, LookupError):
    """An account was needed, none was named and no default account is set."""

    code = "no_default_account"

    def __init__(self, keystore_dir: str, count: int) -> None:
        self.keystore_dir = keystore_dir
        self.count = count
        hint = (
            "Run 'mercato wallet new' to create one."
            if count == 0
            else f"{count} accounts are in {keystore_dir}: choose one with "
            "'mercato wallet default ADDRESS'."
        )
        super().__init__(f"No default account is set. {hint}")


class WrongPasswordError(WalletError, ValueError):
    """The password does not open this keystore (its MAC does not match)."""

    code = "wrong_password"

    def __init__(self, address: str, path: str) -> None:
        self.address = address
        self.path = path
        super().__init__(
            f"Wrong password for {address} (keystore {path}). Try again; if the password "
            "comes from --password-file or MERCATO_PASSWORD, check that it is the one this "
            "keystore was created with."
        )


class KeystoreInvalidError(WalletError, ValueError):
    """A file is not a Web3 Secret Storage v3 keystore Mercato can read."""

    code = "keystore_invalid"

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"{path} is not a usable keystore: {reason}. Export the account again as a JSON "
            "keystore (version 3) from geth or MetaMask, or restore the file from a backup."
        )


class AccountExistsError(WalletError, FileExistsError):
    """The keystore directory already holds a keystore for this address."""

    code = "account_exists"

    def __init__(self, address: str, path: str) -> None:
        self.address = address
        self.path = path
        super().__init__(
            f"{address} is already in your wallet ({path}); nothing was changed. Use it as it "
            "is, or remove that file first to replace it."
        )


class ExportTargetExistsError(WalletError, FileExistsError):
    """The destination of a keystore export already exists."""

    code = "export_target_exists"

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"{path} already exists; nothing was written. Choose another file name or a directory."
        )


class PasswordUnavailableError(WalletError, RuntimeError):
    """No password could be obtained, or the one given is not acceptable."""

    code = "password_unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class WalletInputError(WalletError, ValueError):
    """An address or a private-key file given to the wallet is malformed."""

    code = "wallet_input_invalid"


class InvalidAddressError(WalletInputError):
    """A string is not a 20-byte hex Ethereum address."""

    code = "invalid_address"

    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(
            f"{value!r} is not an Ethereum address. Give 40 hex digits, with or without "
            "'0x'; run 'mercato wallet list' to see yours."
        )


class PrivateKeyFileError(WalletInputError):
    """A private-key file does not hold one 32-byte hex key. Never carries the file's text."""

    code = "private_key_file_invalid"

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"{path} does not hold a private key: {reason}. The file must contain exactly "
            "64 hex digits (optionally prefixed by '0x') and nothing else."
        )


class KeystoreWriteError(WalletError, OSError):
    """A keystore file could not be written or read; nothing partial was left behind."""

    code = "keystore_io"

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(
            f"Cannot write or read {path}: {detail}. Check that the data directory exists, "
            "is yours and has free space (or pass --data-dir)."
        )


class ProviderRejectedError(MarketError, ValueError):
    """The provider answered a call with an error of its own."""

    code = "provider_rejected"

    def __init__(self, url: str, status: int, remote_code: str, message: str) -> None:
        self.url, self.status, self.remote_code = url, status, remote_code
        super().__init__(f"The provider at {url} refused the call ({remote_code}): {message}")


# --- node and gateway ------------------------------------------------------------------


class GatewayStartError(MercatoError, OSError):
    """The node's HTTP gateway could not start."""

    code = "gateway_start_failed"

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        super().__init__(
            f"The gateway did not start on {host}:{port}. Is the port in use? Choose another "
            "with --gateway-port."
        )


# --- gateway: sign-in, sessions, uploads --------------------------------------------------


class GatewayError(MercatoError):
    """A request to the node's gateway cannot be served as asked."""

    code = "gateway_error"


class SiweError(GatewayError, PermissionError):
    """A Sign-In with Ethereum (EIP-4361) message or signature is refused."""

    code = "siwe_invalid"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Sign-in refused: {reason}. Ask for a new sign-in message and sign it.")


class SiweMessageError(SiweError, ValueError):
    """The text is not a well-formed EIP-4361 message."""

    code = "siwe_malformed"


class SiweNonceError(SiweError):
    """The nonce was never issued by this node, or it was already used (a replay)."""

    code = "siwe_nonce"


class SiweExpiredError(SiweError):
    """The message's expiration time has passed, or its not-before time has not come."""

    code = "siwe_expired"


class SiweDomainError(SiweError):
    """The message was made for another site (domain or URI)."""

    code = "siwe_domain"


class SiweChainError(SiweError):
    """The message names another chain than the one this node serves."""

    code = "siwe_chain"


class SiweSignatureError(SiweError):
    """The signature does not recover to the message's address."""

    code = "siwe_signature"


class SessionRequiredError(GatewayError, PermissionError):
    """The request needs a signed-in wallet and has no valid session."""

    code = "session_required"

    def __init__(self, action: str) -> None:
        self.action = action
        super().__init__(
            f"Sign in with your wallet to {action} (POST /v1/auth/nonce, then /v1/auth/verify)."
        )


class UploadError(GatewayError, ValueError):
    """An uploaded model package cannot be stored."""

    code = "upload_invalid"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"The upload was refused: {reason}.")


class UploadPathError(UploadError):
    """A file path in an upload is not a plain relative path inside the package."""

    code = "upload_path_invalid"

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(
            f"the file path {path[:80]!r} {reason}; name files with relative paths of "
            "letters, digits and '/'-separated folders inside the package"
        )


class RequestBodyError(GatewayError, ValueError):
    """A request body is refused before it is parsed (too big, or shaped to hurt the node)."""

    code = "request_body_invalid"


class RequestTooLargeError(RequestBodyError):
    """A request body is larger than its route accepts."""

    code = "request_too_large"

    def __init__(self, limit: int, size: int | None) -> None:
        self.limit, self.size = limit, size
        sent = f"{size} bytes" if size is not None else "more than that"
        super().__init__(
            f"The request body is too large: this route takes at most {limit} bytes, the "
            f"request has {sent}. Send less (publish large models with 'mercato publish')."
        )


class RequestTimeoutError(RequestBodyError):
    """A request body arrived too slowly (a client holding a connection open)."""

    code = "request_timeout"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"The request body did not arrive within {seconds:.0f} s. Check the connection "
            "and send it again."
        )


class RequestTooDeepError(RequestBodyError):
    """A JSON request body nests arrays and objects deeper than the gateway accepts."""

    code = "request_too_deep"

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        super().__init__(
            f"The JSON body nests arrays and objects more than {max_depth} levels deep; "
            "no request to this API needs that many. Flatten the data."
        )


class RequestTooManyValuesError(RequestBodyError):
    """A JSON request body holds more values than its route can use."""

    code = "request_too_many_values"

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        super().__init__(
            f"The JSON body holds more than {max_values} values (arrays, objects and list "
            "items); this route needs far fewer. Send only the fields it documents."
        )


class RateLimitedError(GatewayError):
    """A client sent more requests of one kind than the gateway allows in a while."""

    code = "rate_limited"

    def __init__(self, what: str, retry_after: float) -> None:
        self.what, self.retry_after = what, retry_after
        super().__init__(f"Too many {what}; retry in {max(retry_after, 1):.0f} s.")


class GatewayBusyError(RateLimitedError):
    """The gateway holds as many request bodies in memory as it allows; try again soon."""

    code = "gateway_busy"

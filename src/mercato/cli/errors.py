# SPDX-License-Identifier: AGPL-3.0-only
"""How the command line turns an error into a sentence and an exit code.

Exit codes are stable and grouped in bands, one per component; a code is never reused
once retired. The sentence is the error's own message, which says how to fix it.

| band  | component                    |
| ----- | ---------------------------- |
| 0     | success                      |
| 1     | an unexpected error (a bug)  |
| 2     | bad command-line usage       |
| 10-19 | configuration and wallets    |
| 20-29 | chain and contracts          |
| 30-39 | storage                      |
| 40-49 | crypto                       |
| 50-59 | model packages and the try runtime |
| 60-69 | market: models and orders |
| 70-79 | index and gateway            |
| 80-89 | providers and downloads      |
| 90-99 | market, continued: refunds, earnings, faucet, confirmations |
| 100-109 | federated training tasks |
| 110-119 | moderation: denylists, subscriptions |
| 120-129 | federated training tasks, continued: scored-mode evidence |

Set `MERCATO_DEBUG=1` (or pass `--debug` before the command) to see the traceback of
an unexpected error.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from mercato import errors

P = ParamSpec("P")
R = TypeVar("R")

# Most specific first: the first matching class gives the exit code.
EXIT_CODES: tuple[tuple[type[errors.MercatoError], int], ...] = (
    (errors.KeystoreNotFoundError, 11),
    (errors.WrongPasswordError, 12),
    (errors.KeystoreInvalidError, 13),
    (errors.AccountExistsError, 14),
    (errors.PasswordUnavailableError, 15),
    (errors.NoDefaultAccountError, 16),
    (errors.WalletInputError, 17),
    (errors.ExportTargetExistsError, 18),
    (errors.WalletError, 19),
    (errors.ConfigError, 10),
    (errors.AnvilError, 21),
    (errors.EvmVersionError, 27),
    (errors.DeploymentError, 22),
    (errors.ContractRevertError, 23),
    (errors.TransactionFailedError, 24),
    (errors.RpcRetryExhaustedError, 28),
    (errors.LogQueryError, 29),
    (errors.ChainUnavailableError, 25),
    (errors.NoGasError, 26),
    (errors.ChainError, 20),
    (errors.UnsafeURLError, 35),
    (errors.FetchTooLargeError, 36),
    (errors.StorageError, 32),
    (errors.CryptoError, 40),
    (errors.CardSectionsMissingError, 52),
    (errors.ModelPackageError, 50),
    (errors.InferenceError, 51),
    (errors.ModelNotFoundError, 61),
    (errors.VersionNotFoundError, 62),
    (errors.VersionDeprecatedError, 63),
    (errors.NotForSaleError, 64),
    (errors.InsufficientBalanceError, 65),
    (errors.AlreadyLicensedError, 66),
    (errors.LicenseRequiredError, 67),
    (errors.DeliveryTimeoutError, 68),
    (errors.OwnModelError, 69),
    (errors.RefundTooEarlyError, 90),
    (errors.NothingToWithdrawError, 91),
    (errors.FaucetUnavailableError, 92),
    (errors.NotConfirmedError, 93),
    (errors.UnencryptedVersionError, 94),
    (errors.ListingChangedError, 95),
    (errors.EncryptedVersionError, 96),
    (errors.LicenseTermsChangedError, 97),
    (errors.ProviderUnavailableError, 81),
    (errors.ProviderRejectedError, 82),
    (errors.ArtifactTooLargeError, 85),
    (errors.UnsafeArchiveError, 86),
    (errors.DownloadError, 83),
    (errors.ContentKeyMissingError, 84),
    (errors.MarketError, 60),
    (errors.GatewayStartError, 71),
    (errors.FederationSpecError, 101),
    (errors.LocalDataError, 102),
    (errors.FederationAppRefusedError, 103),
    (errors.FederationRuntimeError, 104),
    (errors.FederationCheckpointError, 105),
    (errors.NothingToClaimError, 106),
    (errors.IndexedTaskNotFoundError, 107),
    (errors.FederationTaskNotFoundError, 108),
    (errors.FederationInputError, 109),
    (errors.OwnUpdateMismatchError, 123),
    (errors.FederationEvidenceError, 120),
    (errors.ValidationSetUnavailableError, 121),
    (errors.ValidationSetMismatchError, 122),
    (errors.FederationError, 100),
    (errors.IndexingError, 70),
    (errors.ModerationTargetError, 111),
    (errors.DenylistFormatError, 112),
    (errors.DenylistTooLargeError, 113),
    (errors.SubscriptionNotFoundError, 114),
    (errors.DeniedError, 115),
    (errors.ModerationError, 110),
    (errors.MercatoError, 1),
)

_stderr = Console(stderr=True)


def exit_code_for(error: errors.MercatoError) -> int:
    """The stable exit code of an error."""
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return 1


def report(error: errors.MercatoError, *, as_json: bool = False) -> None:
    """Prints an error for a person (or as JSON with --json) on standard error."""
    if as_json:
        payload = {"error": error.code, "message": str(error)}
        typer.echo(json.dumps(payload), err=True)
    else:
        _stderr.print(f"[bold red]error:[/bold red] {error}", highlight=False)


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Wraps a command: a MercatoError becomes its sentence and exit code, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except errors.MercatoError as error:
            report(error, as_json=bool(kwargs.get("json_output")))
            raise typer.Exit(exit_code_for(error)) from error

    return wrapper

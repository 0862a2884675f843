"""``reelvault audit [--repair] [--json]``: compare the catalog's rows with the stored videos
and thumbnails.

The command does the work itself, as an operator's one-off: it reads storage with the
system's own settings (``system.json`` beside ``reelvault up``, else the environment:
``REELVAULT_STORAGE_*``, ``SUPABASE_*``) and gets the rows from the catalog over NATS (only the
catalog reads Postgres), page by page. The objects are listed first and the rows read after,
so a video stored meanwhile is never taken for an object without a row; an object the listing
missed is looked up again before its row is reported. What is decided about each finding is in
``audit_rules.py``. Exit code 0 when nothing is left to repair, 1 otherwise (2: bad input).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from reelvault_common.contracts.catalog import ListStoredRows, MarkStorageMissing, StoredRow
from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage.factory import open_storage
from reelvault_common.storage.interface import (
    ListedObject,
    ObjectNotFound,
    ObjectStorage,
    StorageError,
)
from reelvault_common.storage.layout import Buckets

from reelvault.admin import (
    CommandFailed,
    Session,
    checked_slug,
    print_table,
    run_with_session,
)
from reelvault.audit_rules import (
    DELETED,
    Finding,
    ObjectId,
    after_repair,
    missing_candidates,
    object_missing,
    objects_without_row,
    row_objects,
    sha256_mismatch,
)
from reelvault.backup.environment import EnvironmentProblem, settings_from
from reelvault.local_system import system_environment

ROWS_PAGE = 500


@dataclass
class AuditReport:
    rows: int
    objects: int
    hashed: int
    findings: list[Finding]
    repaired: bool

    @property
    def remaining(self) -> int:
        return sum(1 for finding in self.findings if finding.remains)

    def as_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "objects": self.objects, "hashed": self.hashed,
                "repaired": self.repaired, "remaining": self.remaining,
                "findings": [finding.as_json() for finding in self.findings]}


def storage_settings(data_dir: Path) -> StorageSettings:
    env = system_environment(data_dir, os.environ)
    try:
        settings = settings_from(StorageSettings, env)
    except EnvironmentProblem as exc:
        raise CommandFailed(str(exc)) from None
    if settings.storage_backend == "filesystem" and not settings.storage_dir.is_dir():
        raise CommandFailed(f"storage: the folder {settings.storage_dir} does not exist "
                            "(REELVAULT_STORAGE_DIR)")
    if settings.storage_signing_key is None:
        # The audit makes no links; a throwaway key keeps the backend from warning about them.
        settings = settings.model_copy(
            update={"storage_signing_key": SecretStr(secrets.token_urlsafe(32))})
    return settings


class Auditor:
    def __init__(self, session: Session, storage: ObjectStorage, buckets: Buckets, *,
                 org: str | None, grace: timedelta, quick: bool) -> None:
        self._session = session
        self._storage = storage
        self._buckets = (buckets.videos.name, buckets.thumbnails.name)
        self._org = org
        self._grace = grace
        self._quick = quick

    async def run(self, *, repair: bool, now: datetime) -> AuditReport:
        listed = {bucket: await self._list(bucket) for bucket in self._buckets}
        rows = await self._rows()
        findings = objects_without_row(listed, rows, now, self._grace)
        present = {(bucket, item.key) for bucket, items in listed.items() for item in items}
        for row, object_id in missing_candidates(rows, listed):
            if await self._storage.stat(*object_id) is None:
                findings.append(object_missing(row, object_id))
            else:
                present.add(object_id)
        hashed = 0
        for row in rows:
            if row.status == DELETED or row.sha256 is None:
                continue
            for object_id, recorded in row_objects(row):
                if recorded is None or object_id not in present:
                    continue
                actual = await self._sha256(object_id)
                hashed += actual is not None
                mismatch = sha256_mismatch(row, object_id, actual) if actual else None
                if mismatch is not None:
                    findings.append(mismatch)
        if repair:
            findings = [await self._repair(finding) for finding in findings]
        return AuditReport(rows=len(rows), objects=sum(len(items) for items in listed.values()),
                           hashed=hashed, findings=findings, repaired=repair)

    async def _list(self, bucket: str) -> list[ListedObject]:
        prefix = f"{self._org}/" if self._org else ""
        return [item async for item in self._storage.list_objects(bucket, prefix)]

    async def _rows(self) -> list[StoredRow]:
        rows: list[StoredRow] = []
        after = None
        while True:
            page = (await self._session.ask(
                ListStoredRows(org=self._org, after=after, limit=ROWS_PAGE))).stored_rows
            if page is None:
                raise CommandFailed("the catalog's answer holds no rows")
            rows += page.items
            if page.next_after is None:
                return rows
            after = page.next_after

    async def _sha256(self, object_id: ObjectId) -> str | None:
        """The object's sha256: from its bytes, or (``--quick``) as its metadata records it;
        None when it cannot tell (gone meanwhile, or no recorded sha256)."""
        if self._quick:
            info = await self._storage.stat(*object_id)
            return info.sha256 if info is not None else None
        digest = hashlib.sha256()
        try:
            async for chunk in self._storage.read(*object_id):
                digest.update(chunk)
        except ObjectNotFound:
            return None
        return digest.hexdigest()

    async def _repair(self, finding: Finding) -> Finding:
        try:
            if finding.action == "remove":
                await self._storage.delete(finding.bucket, finding.key)
            elif finding.action == "mark" and finding.org and finding.video_id:
                await self._session.ask(MarkStorageMissing(org=finding.org,
                                                           video_id=finding.video_id))
            else:
                return finding
        except (StorageError, CommandFailed) as exc:
            return after_repair(finding, False, str(exc))
        return after_repair(finding, True)


def _print_table(report: AuditReport) -> None:
    if report.findings:
        rows = [["PROBLEM", "ACTION", "BUCKET", "KEY", "ORG", "VIDEO", "DETAIL"]]
        rows += [[f.problem, f.action, f.bucket, f.key, f.org or "-",
                  str(f.video_id) if f.video_id else "-", f.detail] for f in report.findings]
        print_table(rows)
    else:
        print("no problems found")
    print(f"checked {report.rows} rows, {report.objects} objects ({report.hashed} hashed): "
          f"{len(report.findings)} findings, {report.remaining} left to repair"
          + ("" if report.repaired or not report.remaining else " (see --repair)"))


def audit(args: argparse.Namespace) -> int:
    org = checked_slug(args.org) if args.org else None
    settings = storage_settings(args.data_dir)

    async def work(session: Session) -> AuditReport:
        try:
            storage = open_storage(settings)
        except (ValueError, StorageError) as exc:
            raise CommandFailed(f"storage: {exc}") from None
        try:
            auditor = Auditor(session, storage, Buckets.from_settings(settings), org=org,
                              grace=timedelta(hours=args.grace_hours), quick=args.quick)
            return await auditor.run(repair=args.repair, now=datetime.now(UTC))
        except StorageError as exc:
            raise CommandFailed(f"storage: {exc.message}") from None
        finally:
            await storage.aclose()

    report = run_with_session(args.data_dir, work)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print_table(report)
    return 1 if report.remaining else 0


def _hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {text!r}") from None
    if not 0 <= hours <= 24 * 365:
        raise argparse.ArgumentTypeError("hours must be between 0 and 8760")
    return hours


def add_audit_command(commands: Any) -> None:
    """Add ``reelvault audit`` to ``commands`` (what ``add_subparsers`` returned)."""
    parser = commands.add_parser(
        "audit", help="compare the catalog's rows with stored videos and thumbnails")
    parser.add_argument("--data-dir", type=Path, default=Path(".reelvault"),
                        help="the folder of a system started with `reelvault up`")
    parser.add_argument("--repair", action="store_true",
                        help="remove objects without a live row (older than --grace-hours) "
                        "and mark rows whose object is missing; sha256 mismatches are only "
                        "reported")
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.add_argument("--org", help="only this organization's rows and objects")
    parser.add_argument("--grace-hours", type=_hours, default=24.0,
                        help="objects without a row younger than this are left alone "
                        "(default 24: an archive may be in progress)")
    parser.add_argument("--quick", action="store_true",
                        help="compare sha256 with what the object's metadata records instead "
                        "of reading its bytes")
    parser.set_defaults(handler=audit)

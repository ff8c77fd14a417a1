#!/usr/bin/env python3
"""Demo source database shaped like GitLab.com, for the pgp tap (``manifests/gitlab_demo_*``).

CLI::

    python scripts/demo_source.py create --dsn DSN [--rows N] [--seed S] [--anchor TS]
    python scripts/demo_source.py touch  --dsn DSN [--fraction 0.01] [--seed S]

Module::

    from demo_source import create, touch, planned_counts
    counts = create(dsn, rows=100_000, seed=42)   # {table: row count}
    changed = touch(dsn, fraction=0.01)           # {table: rows inserted or changed}

``create`` drops and re-creates the demo objects (only those; nothing else in the database is
touched) and fills them server-side with ``generate_series`` + ``INSERT ... SELECT``. Every
"random" value is a hash of (seed, column name, row id) via ``hashint8extended``, so the data are
identical for the same (rows, seed, anchor) whatever plan or parallelism Postgres picks. Row
counts per table are exact and given by :func:`planned_counts`.

Timestamps follow GitLab: most are ``timestamp without time zone`` holding UTC wall-clock time;
a few are ``timestamp with time zone``. ``updated_at`` values lie in the 60 days before
``anchor`` (default: the current UTC hour minus one hour), ``created_at`` in the two years before.

``touch`` simulates activity between two pipeline runs in ONE transaction: it updates a fraction
of the rows of every table (``updated_at`` set to the transaction's ``now()``, in UTC for
``timestamp`` columns), inserts new rows with ids above the current maximum (including new
merge_request_diffs and their merge_request_diff_commits) and changes some SCD rows. It returns
and prints, per table, how many distinct rows were inserted or changed: for every table with an
``updated_at`` column that is exactly the number of rows whose ``updated_at`` is now the touch
time; for merge_request_diff_commits it is the number of new rows (all with a
merge_request_diff_id above the previous maximum).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

DEFAULT_ROWS = 100_000
DEFAULT_SEED = 42

# Share of `rows` per table (sums to 1.0) and a floor so that tiny demos still work.
# namespaces = groups + one personal namespace per user; namespace_statistics = one per group.
_WEIGHTS: dict[str, tuple[float, int]] = {
    "users": (0.03, 8),
    "groups": (0.015, 6),
    "projects": (0.04, 8),
    "members": (0.06, 10),
    "milestones": (0.01, 4),
    "labels": (0.02, 6),
    "label_links": (0.05, 6),
    "issues": (0.12, 20),
    "merge_requests": (0.07, 8),
    "merge_request_diffs": (0.085, 10),
    "merge_request_diff_commits": (0.17, 20),
    "notes": (0.145, 20),
    "p_ci_builds": (0.14, 12),
}

TABLES: tuple[str, ...] = (
    "namespaces",
    "namespace_statistics",
    "users",
    "projects",
    "members",
    "milestones",
    "labels",
    "label_links",
    "issues",
    "merge_requests",
    "merge_request_diffs",
    "merge_request_diff_commits",
    "notes",
    "p_ci_builds",
    "application_settings",
)

# Fixed, well-known rows (always present, whatever the size). The dbt seeds
# transform/seeds/internal_gitlab_{namespaces,projects}.csv list the internal ones.
FIXED_NAMESPACES: tuple[tuple[int, str, str, int | None], ...] = (
    # id, name, path, parent_id
    (1, "GitLab.org", "gitlab-org", None),
    (2, "GitLab.com", "gitlab-com", None),
    (3, "ACME Corp", "acme-corp", None),
    (4, "GitLab Security", "gl-security", 2),
)
FIXED_PROJECTS: tuple[tuple[int, str, str, int], ...] = (
    # id, name, path, namespace_id
    (1, "GitLab", "gitlab", 1),
    (2, "GitLab Runner", "gitlab-runner", 1),
    (3, "www-gitlab-com", "www-gitlab-com", 2),
    (4, "Security Incidents", "security-incidents", 4),
    (5, "ACME Website", "website", 3),
)
INTERNAL_NAMESPACE_IDS: tuple[int, ...] = (1, 2, 4)
INTERNAL_PROJECT_IDS: tuple[int, ...] = (1, 2, 3, 4)
MASKED_PROJECT_IDS: tuple[int, ...] = (4,)  # issues_internal_only masks title/description
HOT_PROJECT_IDS = 5  # projects 1..5 get ~20% of issues, MRs, notes and builds

# Nasty-but-valid text. Rows with id <= len(NASTY) (issues: all in project 1) and every
# 97th row carry one of these in their free-text columns.
NASTY: tuple[str, ...] = (
    "It's a \"quoted\" title, with commas, and 'single' quotes",
    "multi\nline\r\nwith CRLF\rand CR",
    "tab\tseparated\tvalues\t",
    "back\\slash \\N \\\\ C:\\path\\to\\file \\x41",
    "unicode: naïve café — Ünïcödé 日本語 中文 العربية 🦊🚀👩‍💻",
    "'; DROP TABLE issues; --",
    "NULL",
    "",
    "  padded with spaces  ",
    "100%% done, {BEGIN_TIMESTAMP} and %s are not placeholders here",
    'json-ish {"a": [1, 2], "b": null} and <html>&amp;</html>',
    "x" * 5000,
)

NOW_UTC = "(now() AT TIME ZONE 'UTC')"

# fmt: off
_FIRST = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
)
_LAST = (
    "smith", "jones", "garcia", "müller", "nguyen", "o'brien", "kowalski", "tanaka", "silva",
    "dubois", "ivanova", "singh", "cohen", "rossi", "andersson",
)
_ADJ = (
    "agile", "brave", "calm", "daring", "eager", "fancy", "gentle", "happy", "icy", "jolly",
    "kind", "lucky", "mighty", "nimble", "proud", "quick", "rapid", "silent", "tidy",
)
_NOUN = (
    "otter", "falcon", "badger", "comet", "delta", "ember", "fjord", "glacier", "harbor", "island",
    "jungle", "koala", "lagoon", "meadow", "nebula", "orbit", "panda", "quartz",
)
# fmt: on
_BUILD_NAMES = (
    "rspec unit 1/28",
    "rspec integration 3/12",
    "jest",
    "eslint",
    "rubocop",
    "compile-production-assets",
    "build-qa-image",
    "sast",
    "dast",
    "dependency_scanning",
    "container_scanning",
    "secret_detection",
    "license_scanning",
    "coverage_fuzzing",
    "apifuzzer_fuzz",
    "pages",
    "deploy",
)


def planned_counts(rows: int = DEFAULT_ROWS) -> dict[str, int]:
    """Exact row count per table that :func:`create` produces for ``rows``."""
    size = {k: max(floor, round(w * rows)) for k, (w, floor) in _WEIGHTS.items()}
    size["merge_request_diffs"] = max(size["merge_request_diffs"], size["merge_requests"])
    return {
        "namespaces": size["groups"] + size["users"],
        "namespace_statistics": size["groups"],
        "users": size["users"],
        "projects": size["projects"],
        "members": size["members"],
        "milestones": size["milestones"],
        "labels": size["labels"],
        "label_links": size["label_links"],
        "issues": size["issues"],
        "merge_requests": size["merge_requests"],
        "merge_request_diffs": size["merge_request_diffs"],
        "merge_request_diff_commits": size["merge_request_diff_commits"],
        "notes": size["notes"],
        "p_ci_builds": size["p_ci_builds"],
        "application_settings": 1,
    }


# --------------------------------------------------------------------------- SQL building


def _lit(value: object) -> str:
    """SQL literal (standard_conforming_strings on, as is the default)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _arr(values: Sequence[object]) -> str:
    return "ARRAY[" + ", ".join(_lit(v) for v in values) + "]"


@dataclass
class _Gen:
    """Expression factory for deterministic pseudo-random values keyed on a row expression."""

    seed: int
    anchor: str  # SQL expression of type timestamp (UTC wall clock)
    size: dict[str, int] = field(default_factory=dict)  # highest id per table (references)
    fresh: bool = False  # touch mode: created_at = updated_at = now (UTC)

    def r(self, name: str, key: str = "g") -> str:
        """Uniform double in [0, 1), a pure function of (seed, name, key)."""
        salt = (self.seed * 1_000_003 + zlib.crc32(name.encode())) % (2**62)
        return f"((hashint8extended(({key})::bigint, {salt}) & 4294967295)::float8 / 4294967296.0)"

    def ri(self, lo: int | str, hi: int | str, name: str, key: str = "g") -> str:
        """Uniform bigint in [lo, hi]."""
        return f"(({lo}) + floor({self.r(name, key)} * (({hi}) - ({lo}) + 1))::bigint)"

    def pick(self, values: Sequence[object], name: str, key: str = "g") -> str:
        return f"({_arr(values)})[1 + floor({self.r(name, key)} * {len(values)})::int]"

    def chance(self, p: float, name: str, key: str = "g") -> str:
        return f"({self.r(name, key)} < {p})"

    def maybe(self, p: float, expr: str, name: str, key: str = "g") -> str:
        """``expr`` with probability p, else NULL."""
        return f"CASE WHEN {self.chance(p, name, key)} THEN {expr} END"

    def ref(self, table: str, name: str, p_null: float = 0.0) -> str:
        """Random id of ``table`` (1..max), NULL with probability p_null."""
        expr = self.ri(1, self.size[table], name)
        return self.maybe(1 - p_null, expr, name + ".null") if p_null else expr

    def hot_project(self, name: str) -> str:
        """Project id skewed towards the well-known projects 1..5 (like gitlab-org/gitlab)."""
        return (
            f"CASE WHEN {self.chance(0.2, name + '.hot')} "
            f"THEN {self.ri(1, HOT_PROJECT_IDS, name + '.hotid')} "
            f"ELSE {self.ri(1, self.size['projects'], name)} END"
        )

    def nasty(self, normal: str, max_len: int | None = None) -> str:
        """Text column: a NASTY value for the first rows and every 97th row, else ``normal``."""
        n = len(NASTY)
        first, every = f"({_arr(NASTY)})[g::int]", f"({_arr(NASTY)})[1 + ((g / 97) % {n})::int]"
        if max_len:  # varchar(255) columns get the values cut to fit
            first, every = f"left({first}, {max_len})", f"left({every}, {max_len})"
        return f"CASE WHEN g <= {n} THEN {first} WHEN g % 97 = 0 THEN {every} ELSE {normal} END"

    def words(self, name: str, sep: str = " ") -> str:
        return f"{self.pick(_ADJ, name + '.a')} || {_lit(sep)} || {self.pick(_NOUN, name + '.n')}"

    def series(self, lo: int, hi: int, n: int, name: str) -> str:
        """FROM item ``s(g, c, u)``: ids lo..hi, created_at c, updated_at u (timestamp, UTC).

        created_at grows with the id over two years before the anchor; updated_at is between
        created_at and the anchor, within the last 60 days.
        """
        if self.fresh:
            return (
                f"(SELECT g, {NOW_UTC} AS c, {NOW_UTC} AS u "
                f"FROM generate_series({lo}, {hi}) AS g OFFSET 0) AS s"
            )
        c = (
            f"{self.anchor} - interval '730 days' * (({n} - g)::float8 / {n}) "
            f"- interval '1 hour' * {self.r(name + '.cj')}"
        )
        u = f"GREATEST(c, {self.anchor} - interval '60 days' * {self.r(name + '.u')})"
        return (
            f"(SELECT g, c, {u} AS u FROM "
            f"(SELECT g, {c} AS c FROM generate_series({lo}, {hi}) AS g OFFSET 0) AS s0 "
            "OFFSET 0) AS s"
        )

    @staticmethod
    def tz(expr: str) -> str:
        """timestamp (UTC wall clock) -> timestamp with time zone."""
        return f"(({expr}) AT TIME ZONE 'UTC')"


# --------------------------------------------------------------------------- schema

_DROP = """
DROP VIEW IF EXISTS last_replication_timestamp;
DROP TABLE IF EXISTS namespaces, namespace_statistics, users, projects, members, milestones,
    labels, label_links, issues, merge_requests, merge_request_diffs, merge_request_diff_commits,
    notes, p_ci_builds, application_settings CASCADE;
DROP TYPE IF EXISTS ci_build_status;
"""

_DDL = """
CREATE SCHEMA IF NOT EXISTS gitlab_partitions_dynamic;

CREATE TYPE ci_build_status AS ENUM
    ('created', 'pending', 'running', 'success', 'failed', 'canceled', 'skipped', 'manual',
     'scheduled');

CREATE TABLE namespaces (
    id bigint NOT NULL,
    name character varying(255) NOT NULL,
    path character varying(255) NOT NULL,
    owner_id bigint,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    type character varying(255) DEFAULT 'User'::character varying NOT NULL,
    description character varying(255) DEFAULT ''::character varying NOT NULL,
    avatar character varying(255),
    membership_lock boolean DEFAULT false,
    share_with_group_lock boolean DEFAULT false,
    visibility_level integer DEFAULT 20 NOT NULL,
    request_access_enabled boolean DEFAULT true NOT NULL,
    ldap_sync_status character varying(255) DEFAULT 'ready'::character varying NOT NULL,
    ldap_sync_last_update_at timestamp without time zone,
    lfs_enabled boolean,
    parent_id bigint,
    shared_runners_minutes_limit integer,
    repository_size_limit bigint,
    require_two_factor_authentication boolean DEFAULT false NOT NULL,
    two_factor_grace_period integer DEFAULT 48 NOT NULL,
    project_creation_level integer,
    traversal_ids integer[] DEFAULT '{}'::integer[] NOT NULL
);

CREATE TABLE namespace_statistics (
    id bigint NOT NULL,
    namespace_id bigint NOT NULL,
    shared_runners_seconds bigint DEFAULT 0 NOT NULL,
    shared_runners_seconds_last_reset timestamp without time zone,
    storage_size numeric DEFAULT 0 NOT NULL,
    dependency_proxy_size bigint DEFAULT 0 NOT NULL
);

CREATE TABLE users (
    id bigint NOT NULL,
    email character varying DEFAULT ''::character varying NOT NULL,
    sign_in_count integer DEFAULT 0,
    current_sign_in_at timestamp without time zone,
    last_sign_in_at timestamp without time zone,
    current_sign_in_ip inet,
    last_sign_in_ip inet,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    name character varying,
    admin boolean DEFAULT false NOT NULL,
    projects_limit integer NOT NULL,
    state character varying,
    confirmed_at timestamp without time zone,
    username character varying,
    user_type smallint DEFAULT 0 NOT NULL,
    preferred_language character varying,
    private_profile boolean DEFAULT false NOT NULL,
    external boolean DEFAULT false,
    last_activity_on date,
    role smallint,
    otp_required_for_login boolean DEFAULT false NOT NULL,
    preferences jsonb
);

CREATE TABLE projects (
    id bigint NOT NULL,
    name character varying,
    path character varying,
    description text,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    creator_id bigint,
    namespace_id bigint NOT NULL,
    last_activity_at timestamp without time zone,
    import_url character varying,
    visibility_level integer DEFAULT 0 NOT NULL,
    archived boolean DEFAULT false NOT NULL,
    star_count integer DEFAULT 0 NOT NULL,
    merge_requests_rebase_enabled boolean DEFAULT false,
    import_type character varying,
    approvals_before_merge integer DEFAULT 0 NOT NULL,
    mirror boolean DEFAULT false NOT NULL,
    shared_runners_enabled boolean DEFAULT true NOT NULL,
    build_timeout integer DEFAULT 3600 NOT NULL,
    pending_delete boolean DEFAULT false,
    repository_storage character varying DEFAULT 'default'::character varying NOT NULL,
    repository_size_limit bigint,
    storage_version smallint,
    last_repository_updated_at timestamp without time zone
);

CREATE TABLE members (
    id bigint NOT NULL,
    access_level integer NOT NULL,
    source_id bigint NOT NULL,
    source_type character varying NOT NULL,
    user_id bigint,
    notification_level integer NOT NULL,
    type character varying NOT NULL,
    created_at timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL,
    created_by_id bigint,
    invite_email character varying,
    invite_token character varying,
    invite_accepted_at timestamp without time zone,
    requested_at timestamp without time zone,
    expires_at date,
    ldap boolean DEFAULT false NOT NULL,
    override boolean DEFAULT false NOT NULL,
    member_role_id bigint,
    member_namespace_id bigint
);

CREATE TABLE milestones (
    id bigint NOT NULL,
    title character varying NOT NULL,
    project_id bigint,
    description text,
    due_date date,
    created_at timestamp with time zone,
    updated_at timestamp with time zone,
    state character varying,
    iid integer,
    start_date date,
    group_id bigint
);

CREATE TABLE labels (
    id bigint NOT NULL,
    title character varying,
    color character varying,
    project_id bigint,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    template boolean DEFAULT false,
    description character varying,
    type character varying,
    group_id bigint,
    lock_on_merge boolean DEFAULT false NOT NULL
);

CREATE TABLE label_links (
    id bigint NOT NULL,
    label_id bigint,
    target_id bigint,
    target_type character varying,
    created_at timestamp with time zone,
    updated_at timestamp with time zone
);

CREATE TABLE issues (
    id bigint NOT NULL,
    title character varying,
    author_id bigint,
    project_id bigint,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    description text,
    milestone_id bigint,
    iid integer,
    updated_by_id bigint,
    weight integer,
    confidential boolean DEFAULT false NOT NULL,
    due_date date,
    moved_to_id bigint,
    lock_version integer DEFAULT 0,
    time_estimate integer DEFAULT 0,
    total_time_spent numeric(12,4),
    relative_position integer,
    service_desk_reply_to character varying,
    last_edited_at timestamp without time zone,
    last_edited_by_id bigint,
    discussion_locked boolean,
    closed_at timestamp with time zone,
    closed_by_id bigint,
    state_id smallint DEFAULT 1 NOT NULL,
    duplicated_to_id bigint,
    health_status smallint,
    work_item_type_id bigint
);

CREATE TABLE merge_requests (
    id bigint NOT NULL,
    target_branch character varying NOT NULL,
    source_branch character varying NOT NULL,
    source_project_id bigint,
    author_id bigint,
    assignee_id bigint,
    title character varying,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    milestone_id bigint,
    merge_status character varying DEFAULT 'unchecked'::character varying NOT NULL,
    target_project_id bigint NOT NULL,
    iid integer,
    description text,
    updated_by_id bigint,
    merge_error text,
    merge_params text,
    merge_when_pipeline_succeeds boolean DEFAULT false NOT NULL,
    merge_user_id bigint,
    approvals_before_merge integer,
    lock_version integer DEFAULT 0,
    time_estimate integer DEFAULT 0,
    squash boolean DEFAULT false NOT NULL,
    last_edited_at timestamp without time zone,
    last_edited_by_id bigint,
    head_pipeline_id bigint,
    discussion_locked boolean,
    latest_merge_request_diff_id bigint,
    allow_maintainer_to_push boolean DEFAULT true,
    state_id smallint DEFAULT 1 NOT NULL
);

CREATE TABLE merge_request_diffs (
    id bigint NOT NULL,
    state character varying,
    merge_request_id bigint NOT NULL,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    base_commit_sha character varying,
    real_size character varying,
    head_commit_sha character varying,
    start_commit_sha character varying,
    commits_count integer,
    external_diff character varying,
    external_diff_store integer DEFAULT 1,
    stored_externally boolean,
    files_count smallint,
    sorted boolean DEFAULT false NOT NULL,
    diff_type smallint DEFAULT 1 NOT NULL
);

CREATE TABLE merge_request_diff_commits (
    authored_date timestamp without time zone,
    committed_date timestamp without time zone,
    merge_request_diff_id bigint NOT NULL,
    relative_order integer NOT NULL,
    sha bytea NOT NULL,
    commit_author_id bigint,
    committer_id bigint,
    trailers jsonb DEFAULT '{}'::jsonb NOT NULL
);

CREATE TABLE notes (
    id bigint NOT NULL,
    note text,
    noteable_type character varying,
    author_id bigint,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    project_id bigint,
    attachment character varying,
    line_code character varying,
    commit_id character varying,
    noteable_id bigint,
    system boolean DEFAULT false NOT NULL,
    st_diff text,
    updated_by_id bigint,
    type character varying,
    "position" text,
    original_position text,
    resolved_at timestamp without time zone,
    resolved_by_id bigint,
    discussion_id character varying,
    note_html text,
    cached_markdown_version integer,
    change_position text,
    resolved_by_push boolean,
    confidential boolean,
    internal boolean DEFAULT false NOT NULL
);

CREATE TABLE p_ci_builds (
    id bigint NOT NULL,
    partition_id bigint NOT NULL,
    status ci_build_status,
    finished_at timestamp without time zone,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    started_at timestamp without time zone,
    runner_id bigint,
    coverage double precision,
    commit_id bigint,
    name character varying,
    options text,
    allow_failure boolean DEFAULT false NOT NULL,
    stage character varying,
    trigger_request_id bigint,
    stage_idx integer,
    tag boolean,
    ref character varying,
    user_id bigint,
    type character varying,
    description character varying,
    project_id bigint,
    erased_by_id bigint,
    erased_at timestamp without time zone,
    artifacts_expire_at timestamp without time zone,
    environment character varying,
    queued_at timestamp without time zone,
    lock_version integer DEFAULT 0,
    coverage_regex character varying,
    auto_canceled_by_id bigint,
    retried boolean,
    stage_id bigint,
    protected boolean,
    failure_reason integer,
    scheduled_at timestamp with time zone,
    upstream_pipeline_id bigint
) PARTITION BY LIST (partition_id);

-- As on GitLab.com: the first partition is the old table name `ci_builds`, later ones live in
-- gitlab_partitions_dynamic.
CREATE TABLE ci_builds PARTITION OF p_ci_builds FOR VALUES IN (100);
CREATE TABLE gitlab_partitions_dynamic.ci_builds_101 PARTITION OF p_ci_builds FOR VALUES IN (101);
CREATE TABLE gitlab_partitions_dynamic.ci_builds_102 PARTITION OF p_ci_builds FOR VALUES IN (102);

CREATE TABLE application_settings (
    id bigint NOT NULL,
    default_projects_limit integer,
    signup_enabled boolean,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    home_page_url character varying,
    help_page_text text,
    shared_runners_enabled boolean DEFAULT true NOT NULL,
    max_artifacts_size integer DEFAULT 100 NOT NULL,
    usage_ping_enabled boolean DEFAULT true NOT NULL,
    uuid uuid,
    shared_runners_minutes integer DEFAULT 0 NOT NULL,
    repository_size_limit bigint DEFAULT 0,
    protected_paths character varying(255)[]
        DEFAULT '{/users/password,/users/sign_in}'::character varying[],
    domain_denylist text[],
    default_branch_name text,
    rate_limits jsonb DEFAULT '{}'::jsonb NOT NULL,
    container_registry_token_expire_delay integer DEFAULT 5
);

-- What GitLab's replica exposes for the lag-aware window (NOTES.md 2.3): no lag here.
CREATE VIEW last_replication_timestamp AS
    SELECT (now() AT TIME ZONE 'UTC') AS last_replica_time;
"""

_CONSTRAINTS = """
ALTER TABLE namespaces ADD PRIMARY KEY (id);
ALTER TABLE namespace_statistics ADD PRIMARY KEY (id);
ALTER TABLE namespace_statistics ADD UNIQUE (namespace_id);
ALTER TABLE users ADD PRIMARY KEY (id);
ALTER TABLE projects ADD PRIMARY KEY (id);
ALTER TABLE members ADD PRIMARY KEY (id);
ALTER TABLE milestones ADD PRIMARY KEY (id);
ALTER TABLE labels ADD PRIMARY KEY (id);
ALTER TABLE label_links ADD PRIMARY KEY (id);
ALTER TABLE issues ADD PRIMARY KEY (id);
ALTER TABLE merge_requests ADD PRIMARY KEY (id);
ALTER TABLE merge_request_diffs ADD PRIMARY KEY (id);
ALTER TABLE merge_request_diff_commits ADD PRIMARY KEY (merge_request_diff_id, relative_order);
ALTER TABLE notes ADD PRIMARY KEY (id);
ALTER TABLE p_ci_builds ADD PRIMARY KEY (id, partition_id);
ALTER TABLE application_settings ADD PRIMARY KEY (id);
CREATE INDEX index_namespaces_on_updated_at ON namespaces (updated_at);
CREATE INDEX index_users_on_updated_at ON users (updated_at);
CREATE INDEX index_projects_on_updated_at ON projects (updated_at);
CREATE INDEX index_milestones_on_updated_at ON milestones (updated_at);
CREATE INDEX index_labels_on_updated_at ON labels (updated_at);
CREATE INDEX index_issues_on_updated_at ON issues (updated_at);
CREATE INDEX index_issues_on_project_id ON issues (project_id);
CREATE INDEX index_merge_requests_on_updated_at ON merge_requests (updated_at);
CREATE INDEX index_merge_request_diffs_on_updated_at ON merge_request_diffs (updated_at);
CREATE INDEX index_notes_on_updated_at ON notes (updated_at);
CREATE INDEX index_p_ci_builds_on_updated_at ON p_ci_builds (updated_at);
CREATE INDEX index_p_ci_builds_on_project_id ON p_ci_builds (project_id);
"""


# --------------------------------------------------------------------------- generators
# Each returns one INSERT ... SELECT for ids lo..hi. `n` is the table's planned size (it
# spreads created_at over two years); in touch mode (x.fresh) timestamps are now().

_Col = tuple[str, str]

_PROJECT_DESC_TAIL = " || E'.\\n\\nSee the README.'"
_ISSUE_DESC_HEAD = "E'## Summary\\n\\nSteps to reproduce: ' || "
_ISSUE_DESC_TAIL = " || E'\\n\\n/label ~bug'"
_MR_DESC_HEAD = "E'## What does this MR do?\\n\\n' || "
_MR_PARAMS = "E'---\\nforce_remove_source_branch: true\\n'"
_NOTE_TAIL = " || E'\\n\\n> quoted reply'"
_BUILD_OPTIONS = _lit('{"image":"ruby:3.2","script":["bundle exec rspec"]}')
_COVERAGE_REGEX = _lit(r"/Coverage: (\d+\.\d+)%/")
_TRAILER = (
    "jsonb_build_object('Signed-off-by', "
    + _lit('Ada "Countess" O\'Lovelace <ada@example.com>')
    + ", 'Changelog', 'fixed', 'Note', "
    + _lit(NASTY[1])
    + ")"
)
_BIG_NUMERIC = "12345678901234567890.123456789"  # > 2**64: fits neither bigint nor a double


def _insert(table: str, cols: Sequence[_Col], source: str) -> str:
    names = ", ".join(f'"{name}"' for name, _ in cols)
    exprs = ",\n    ".join(expr for _, expr in cols)
    return f"INSERT INTO {table} ({names})\nSELECT\n    {exprs}\nFROM {source}"


def _ins_groups(x: _Gen, lo: int, hi: int, n: int) -> str:
    # Groups 1..G. id % 4 = 0 is a subgroup of a top-level group (id % 4 <> 0) with a lower id.
    raw = x.ri(1, "g - 1", "ns.parent")
    parent = f"CASE WHEN g % 4 = 0 THEN (CASE WHEN {raw} % 4 = 0 THEN {raw} - 1 ELSE {raw} END) END"
    cols: list[_Col] = [
        ("id", "g"),
        ("name", x.nasty(f"initcap({x.words('ns.name')}) || ' ' || g", 255)),
        ("path", f"{x.words('ns.name', '-')} || '-' || g"),
        ("owner_id", "NULL"),
        ("created_at", "c"),
        ("updated_at", "u"),
        ("type", "'Group'"),
        ("description", x.nasty(f"'Group about ' || {x.pick(_NOUN, 'ns.desc')}", 255)),
        ("avatar", x.maybe(0.3, "'avatar_' || g || '.png'", "ns.avatar")),
        ("membership_lock", x.chance(0.05, "ns.mlock")),
        ("share_with_group_lock", x.chance(0.05, "ns.swgl")),
        ("visibility_level", x.pick([0, 10, 20, 20, 20], "ns.vis")),
        ("request_access_enabled", x.chance(0.8, "ns.rae")),
        ("ldap_sync_status", x.pick(["ready", "ready", "started", "failed"], "ns.ldap")),
        ("ldap_sync_last_update_at", x.maybe(0.1, "u", "ns.ldapts")),
        ("lfs_enabled", x.maybe(0.5, x.chance(0.7, "ns.lfsv"), "ns.lfs")),
        ("parent_id", "parent"),
        (
            "shared_runners_minutes_limit",
            x.maybe(0.2, x.pick([400, 2000, 10000, 50000], "ns.srml"), "ns.srmln"),
        ),
        (
            "repository_size_limit",
            x.maybe(0.1, f"{x.ri(1, 100, 'ns.rsl')} * 1073741824", "ns.rsln"),
        ),
        ("require_two_factor_authentication", x.chance(0.1, "ns.2fa")),
        ("two_factor_grace_period", "48"),
        ("project_creation_level", x.maybe(0.3, x.ri(0, 2, "ns.pcl"), "ns.pcln")),
        (
            "traversal_ids",
            "CASE WHEN parent IS NULL THEN ARRAY[g::int] ELSE ARRAY[parent::int, g::int] END",
        ),
    ]
    source = f"(SELECT s.*, {parent} AS parent FROM {x.series(lo, hi, n, 'ns')} OFFSET 0) AS s"
    return _insert("namespaces", cols, source)


def _ins_user_namespaces(lo: int, hi: int, offset: int) -> str:
    # Personal namespace (type 'User') of user (id - offset), same timestamps as the user.
    cols: list[_Col] = [
        ("id", "n.id"),
        ("name", "left(COALESCE(us.name, us.username), 255)"),
        ("path", "us.username"),
        ("owner_id", "us.id"),
        ("created_at", "us.created_at"),
        ("updated_at", "us.updated_at"),
        ("type", "'User'"),
        ("visibility_level", "20"),
        ("traversal_ids", "ARRAY[n.id::int]"),
    ]
    source = f"generate_series({lo}, {hi}) AS n(id) JOIN users us ON us.id = n.id - ({offset})"
    return _insert("namespaces", cols, source)


# A user's IPv6 address from its id ``g``, in two groups: a group holds 16 bits, and there are
# more than 65,535 users from --rows 2,200,000 on.
USER_IPV6 = "('2001:db8::' || to_hex(g >> 16) || ':' || to_hex(g & 65535))::inet"


def _ins_users(x: _Gen, lo: int, hi: int, n: int) -> str:
    first, last = x.pick(_FIRST, "us.first"), x.pick(_LAST, "us.last")
    ipv4 = "('10.' || ((g >> 16) & 255) || '.' || ((g >> 8) & 255) || '.' || (g & 255))::inet"
    prefs = (
        f"jsonb_build_object('theme_id', {x.ri(1, 11, 'us.theme')}, "
        f"'tab_width', {x.ri(2, 8, 'us.tab')}, "
        f"'time_display_relative', {x.chance(0.7, 'us.tdr')}, "
        f"'dashboard', {x.pick(['projects', 'stars', 'your_activity'], 'us.dash')}, "
        "'pinned_nav_items', jsonb_build_array('issues', 'merge_requests'), "
        f"'signature', CASE WHEN g % 97 = 0 THEN {_lit(NASTY[4])} END)"
    )
    cols: list[_Col] = [
        ("id", "g"),
        ("email", "uname || '@example.com'"),
        ("sign_in_count", "signins"),
        ("current_sign_in_at", "CASE WHEN signins > 0 THEN u END"),
        ("last_sign_in_at", "CASE WHEN signins > 1 THEN c + (u - c) / 2 END"),
        (
            "current_sign_in_ip",
            f"CASE WHEN signins > 0 THEN CASE WHEN {x.chance(0.8, 'us.v4')} THEN {ipv4} "
            f"ELSE {USER_IPV6} END END",
        ),
        ("last_sign_in_ip", f"CASE WHEN signins > 1 THEN {ipv4} END"),
        ("created_at", "c"),
        ("updated_at", "u"),
        ("name", x.nasty(f"initcap({first}) || ' ' || initcap({last})")),
        ("admin", "g = 1"),
        ("projects_limit", x.pick([10, 100, 100000], "us.plimit")),
        ("state", x.pick(["active"] * 8 + ["blocked", "deactivated"], "us.state")),
        ("confirmed_at", x.maybe(0.9, "c + interval '10 minutes'", "us.conf")),
        ("username", "uname"),
        ("user_type", x.pick([0, 0, 0, 0, 0, 0, 1, 4, 6], "us.type")),
        (
            "preferred_language",
            x.maybe(0.7, x.pick(["en", "de", "fr", "ja", "pt_BR", "zh_CN"], "us.lang"), "us.ln"),
        ),
        ("private_profile", x.chance(0.1, "us.priv")),
        ("external", x.maybe(0.5, x.chance(0.05, "us.extv"), "us.ext")),
        ("last_activity_on", x.maybe(0.8, "u::date", "us.lao")),
        ("role", x.maybe(0.4, x.ri(0, 8, "us.role"), "us.rolen")),
        ("otp_required_for_login", x.chance(0.3, "us.otp")),
        ("preferences", x.maybe(0.75, prefs, "us.prefs")),
    ]
    signins = f"CASE WHEN {x.chance(0.1, 'us.never')} THEN 0 ELSE {x.ri(1, 500, 'us.sic')} END"
    source = (
        f"(SELECT s.*, lower({first} || '.' || replace({last}, '''', '')) || g AS uname, "
        f"{signins} AS signins FROM {x.series(lo, hi, n, 'us')} OFFSET 0) AS s"
    )
    return _insert("users", cols, source)


def _ins_namespace_statistics(x: _Gen, groups: int) -> str:
    cols: list[_Col] = [
        ("id", "g"),
        ("namespace_id", "g"),
        ("shared_runners_seconds", x.ri(0, 10_000_000, "nst.srs")),
        (
            "shared_runners_seconds_last_reset",
            x.maybe(0.6, f"date_trunc('month', {x.anchor})", "nst.reset"),
        ),
        (
            "storage_size",
            f"CASE WHEN g % 101 = 0 THEN {_BIG_NUMERIC} "
            f"ELSE round(({x.r('nst.ss')} * 1e12)::numeric, 2) END",
        ),
        ("dependency_proxy_size", x.ri(0, 1_000_000_000, "nst.dps")),
    ]
    return _insert("namespace_statistics", cols, f"generate_series(1, {groups}) AS g")


def _ins_projects(x: _Gen, lo: int, hi: int, n: int) -> str:
    desc = x.nasty(f"'A project about ' || {x.words('pr.desc')}{_PROJECT_DESC_TAIL}")
    cols: list[_Col] = [
        ("id", "g"),
        ("name", x.nasty(f"initcap({x.words('pr.name')})", 255)),
        ("path", f"{x.words('pr.name', '-')} || '-' || g"),
        ("description", x.maybe(0.7, desc, "pr.descn")),
        ("created_at", "c"),
        ("updated_at", "u"),
        ("creator_id", x.ref("users", "pr.creator", 0.02)),
        ("namespace_id", x.ref("namespaces", "pr.ns")),
        ("last_activity_at", "u"),
        (
            "import_url",
            x.maybe(0.1, "'https://github.com/example/repo-' || g || '.git'", "pr.iurl"),
        ),
        ("visibility_level", x.pick([0, 0, 10, 20], "pr.vis")),
        ("archived", x.chance(0.05, "pr.arch")),
        ("star_count", x.ri(0, 50, "pr.stars")),
        ("merge_requests_rebase_enabled", x.chance(0.2, "pr.rebase")),
        (
            "import_type",
            x.maybe(0.1, x.pick(["github", "gitlab_project", "bitbucket"], "pr.it"), "pr.itn"),
        ),
        ("approvals_before_merge", x.ri(0, 2, "pr.abm")),
        ("mirror", x.chance(0.03, "pr.mirror")),
        ("shared_runners_enabled", x.chance(0.9, "pr.sre")),
        ("build_timeout", x.pick([3600, 3600, 7200, 10800], "pr.bt")),
        ("pending_delete", x.chance(0.01, "pr.pd")),
        ("repository_storage", x.pick(["default", "nfs-file01", "nfs-file02"], "pr.rs")),
        (
            "repository_size_limit",
            x.maybe(0.05, f"{x.ri(1, 10, 'pr.rsl')} * 1073741824", "pr.rsln"),
        ),
        ("storage_version", x.maybe(0.95, "2::smallint", "pr.sv")),
        ("last_repository_updated_at", x.maybe(0.9, "u", "pr.lru")),
    ]
    return _insert("projects", cols, x.series(lo, hi, n, "pr"))


def _ins_members(x: _Gen, lo: int, hi: int, n: int) -> str:
    expires = (
        f"CASE WHEN {x.chance(0.01, 'mb.far')} THEN DATE '9999-12-31' "
        f"WHEN {x.chance(0.1, 'mb.exp')} "
        f"THEN (u + interval '1 day' * {x.ri(1, 365, 'mb.expd')})::date END"
    )
    cols: list[_Col] = [
        ("id", "g"),
        ("access_level", x.pick([10, 20, 30, 30, 40, 50], "mb.al")),
        ("source_id", "src"),
        ("source_type", "CASE WHEN grp THEN 'Namespace' ELSE 'Project' END"),
        ("user_id", f"CASE WHEN invite THEN NULL ELSE {x.ref('users', 'mb.user')} END"),
        ("notification_level", "3"),
        ("type", "CASE WHEN grp THEN 'GroupMember' ELSE 'ProjectMember' END"),
        ("created_at", "c"),
        ("updated_at", "u"),
        ("created_by_id", x.ref("users", "mb.by", 0.3)),
        ("invite_email", "CASE WHEN invite THEN 'invitee' || g || '@example.org' END"),
        ("invite_token", "CASE WHEN invite THEN md5('tok' || g) END"),
        (
            "invite_accepted_at",
            f"CASE WHEN NOT invite AND {x.chance(0.05, 'mb.iaa')} THEN c + interval '1 day' END",
        ),
        ("requested_at", x.maybe(0.02, "c", "mb.req")),
        ("expires_at", expires),
        ("ldap", x.chance(0.02, "mb.ldap")),
        ("override", "false"),
        ("member_role_id", "NULL"),
        ("member_namespace_id", "CASE WHEN grp THEN src END"),
    ]
    source = (
        f"(SELECT s.*, grp, {x.chance(0.03, 'mb.inv')} AS invite, "
        f"CASE WHEN grp THEN {x.ref('groups', 'mb.gsrc')} "
        f"ELSE {x.ref('projects', 'mb.psrc')} END AS src "
        f"FROM {x.series(lo, hi, n, 'mb')}, LATERAL (SELECT {x.chance(0.4, 'mb.grp')} AS grp) "
        "AS l OFFSET 0) AS s"
    )
    return _insert("members", cols, source)


def _ins_milestones(x: _Gen, lo: int, hi: int, n: int) -> str:
    cols: list[_Col] = [
        ("id", "g"),
        ("title", x.nasty(f"'%.' || (g % 20) || ' ' || {x.pick(_NOUN, 'ms.t')}")),
        ("project_id", f"CASE WHEN grp THEN NULL ELSE {x.hot_project('ms.proj')} END"),
        ("description", x.maybe(0.5, x.nasty("'Milestone ' || g"), "ms.desc")),
        (
            "due_date",
            x.maybe(0.7, f"(u + interval '1 day' * {x.ri(-30, 90, 'ms.due')})::date", "ms.duen"),
        ),
        ("created_at", x.tz("c")),
        ("updated_at", x.tz("u")),
        ("state", x.pick(["active", "active", "closed"], "ms.state")),
        ("iid", "g"),
        ("start_date", x.maybe(0.5, "c::date", "ms.start")),
        ("group_id", f"CASE WHEN grp THEN {x.ref('groups', 'ms.group')} END"),
    ]
    source = (
        f"(SELECT s.*, {x.chance(0.3, 'ms.grp')} AS grp "
        f"FROM {x.series(lo, hi, n, 'ms')} OFFSET 0) AS s"
    )
    return _insert("milestones", cols, source)


def _ins_labels(x: _Gen, lo: int, hi: int, n: int) -> str:
    titles = [
        "bug",
        "feature",
        "docs",
        "security",
        "priority::1",
        "severity::2",
        "workflow::in dev",
        "type::maintenance",
        "group::source code",
    ]
    group = (
        f"CASE WHEN {x.chance(0.2, 'lb.hotg')} "
        f"THEN {x.pick(list(INTERNAL_NAMESPACE_IDS), 'lb.hg')} "
        f"ELSE {x.ref('groups', 'lb.group')} END"
    )
    cols: list[_Col] = [
        ("id", "g"),
        ("title", x.nasty(f"{x.pick(titles, 'lb.title')} || ' ' || g")),
        ("color", f"'#' || lpad(to_hex({x.ri(0, 16777215, 'lb.color')}), 6, '0')"),
        ("project_id", f"CASE WHEN grp THEN NULL ELSE {x.hot_project('lb.proj')} END"),
        ("created_at", "c"),
        ("updated_at", "u"),
        ("template", x.chance(0.01, "lb.tmpl")),
        ("description", x.maybe(0.4, x.nasty("'Label description ' || g"), "lb.desc")),
        ("type", "CASE WHEN grp THEN 'GroupLabel' ELSE 'ProjectLabel' END"),
        ("group_id", f"CASE WHEN grp THEN {group} END"),
        ("lock_on_merge", x.chance(0.02, "lb.lom")),
    ]
    source = (
        f"(SELECT s.*, {x.chance(0.4, 'lb.grp')} AS grp "
        f"FROM {x.series(lo, hi, n, 'lb')} OFFSET 0) AS s"
    )
    return _insert("labels", cols, source)


def _ins_label_links(x: _Gen, lo: int, hi: int, n: int) -> str:
    target = (
        f"CASE WHEN issue THEN {x.ref('issues', 'll.issue')} "
        f"ELSE {x.ref('merge_requests', 'll.mr')} END"
    )
    cols: list[_Col] = [
        ("id", "g"),
        ("label_id", x.ref("labels", "ll.label")),
        ("target_id", target),
        ("target_type", "CASE WHEN issue THEN 'Issue' ELSE 'MergeRequest' END"),
        ("created_at", x.tz("c")),
        ("updated_at", x.tz("u")),
    ]
    source = (
        f"(SELECT s.*, {x.chance(0.7, 'll.isiss')} AS issue "
        f"FROM {x.series(lo, hi, n, 'll')} OFFSET 0) AS s"
    )
    return _insert("label_links", cols, source)


def _ins_issues(x: _Gen, lo: int, hi: int, n: int) -> str:
    title = f"initcap({x.words('is.title')}) || ' breaks ' || {x.pick(_NOUN, 'is.t2')}"
    desc = x.nasty(f"{_ISSUE_DESC_HEAD}{x.words('is.desc')}{_ISSUE_DESC_TAIL}")
    cols: list[_Col] = [
        ("id", "g"),
        ("title", x.nasty(title)),
        ("author_id", "author"),
        # The NASTY rows all live in gitlab-org/gitlab (internal, not masked).
        ("project_id", f"CASE WHEN g <= {len(NASTY)} THEN 1 ELSE {x.hot_project('is.proj')} END"),
        ("created_at", "c"),
        ("updated_at", "u"),
        ("description", x.maybe(0.8, desc, "is.descn")),
        ("milestone_id", x.ref("milestones", "is.ms", 0.7)),
        ("iid", "g"),
        ("updated_by_id", x.maybe(0.3, "author", "is.upd")),
        ("weight", x.maybe(0.3, x.pick([0, 1, 2, 3, 5, 8, 13], "is.wv"), "is.w")),
        ("confidential", x.chance(0.05, "is.conf")),
        (
            "due_date",
            x.maybe(0.2, f"(c + interval '1 day' * {x.ri(1, 120, 'is.due')})::date", "is.duen"),
        ),
        ("moved_to_id", x.ref("issues", "is.moved", 0.99)),
        ("lock_version", x.ri(0, 5, "is.lock")),
        ("time_estimate", x.pick([0, 0, 0, 3600, 7200, 28800], "is.te")),
        (
            "total_time_spent",
            x.maybe(0.3, f"round(({x.r('is.tts')} * 100000)::numeric, 4)", "is.ttsn"),
        ),
        ("relative_position", x.maybe(0.6, x.ri(-1073741823, 1073741823, "is.rp"), "is.rpn")),
        ("service_desk_reply_to", x.maybe(0.01, "'support+' || g || '@example.com'", "is.sd")),
        ("last_edited_at", x.maybe(0.2, "u", "is.le")),
        ("last_edited_by_id", x.maybe(0.2, "author", "is.leb")),
        ("discussion_locked", x.maybe(0.1, x.chance(0.5, "is.dlv"), "is.dl")),
        ("closed_at", f"CASE WHEN closed THEN {x.tz('u')} END"),
        ("closed_by_id", "CASE WHEN closed THEN author END"),
        ("state_id", "CASE WHEN closed THEN 2 ELSE 1 END"),
        ("duplicated_to_id", x.ref("issues", "is.dup", 0.995)),
        ("health_status", x.maybe(0.1, f"{x.ri(1, 3, 'is.hs')}::smallint", "is.hsn")),
        ("work_item_type_id", x.pick([1, 1, 1, 1, 2, 3], "is.wit")),
    ]
    source = (
        f"(SELECT s.*, {x.ref('users', 'is.author')} AS author, "
        f"{x.chance(0.4, 'is.closed')} AS closed FROM {x.series(lo, hi, n, 'is')} OFFSET 0) AS s"
    )
    return _insert("issues", cols, source)


def _mr_of_diff(x: _Gen, key: str, mrs: int) -> str:
    """merge_request_id of diff ``key``: diffs 1..mrs belong to MR = id, later ones random."""
    return f"CASE WHEN {key} <= {mrs} THEN {key} ELSE {x.ri(1, mrs, 'mrd.mr', key)} END"


def _ins_merge_requests(x: _Gen, lo: int, hi: int, n: int, latest: str) -> str:
    """``latest``: FROM item ``lt(mr, latest)`` giving latest_merge_request_diff_id per MR."""
    desc = x.nasty(f"{_MR_DESC_HEAD}{x.words('mr.desc')}")
    cols: list[_Col] = [
        ("id", "g"),
        ("target_branch", x.pick(["main", "main", "master", "stable", "16-0-stable"], "mr.tb")),
        ("source_branch", x.nasty(f"{x.words('mr.sb', '-')} || '-' || g", 255)),
        (
            "source_project_id",
            f"CASE WHEN {x.chance(0.9, 'mr.same')} THEN tproj "
            f"ELSE {x.ref('projects', 'mr.sp')} END",
        ),
        ("author_id", "author"),
        ("assignee_id", x.ref("users", "mr.assignee", 0.4)),
        ("title", x.nasty(f"'Draft: ' || initcap({x.words('mr.title')})")),
        ("created_at", "c"),
        ("updated_at", "u"),
        ("milestone_id", x.ref("milestones", "mr.ms", 0.8)),
        (
            "merge_status",
            x.pick(["can_be_merged", "can_be_merged", "cannot_be_merged", "unchecked"], "mr.mst"),
        ),
        ("target_project_id", "tproj"),
        ("iid", "g"),
        ("description", x.maybe(0.7, desc, "mr.descn")),
        ("updated_by_id", x.maybe(0.3, "author", "mr.upd")),
        ("merge_error", x.maybe(0.02, "'Something went wrong'", "mr.err")),
        ("merge_params", x.maybe(0.5, _MR_PARAMS, "mr.params")),
        ("merge_when_pipeline_succeeds", x.chance(0.1, "mr.mwps")),
        ("merge_user_id", "CASE WHEN state = 3 THEN author END"),
        ("approvals_before_merge", x.maybe(0.2, x.ri(0, 3, "mr.abm"), "mr.abmn")),
        ("lock_version", x.ri(0, 9, "mr.lock")),
        ("time_estimate", x.pick([0, 0, 0, 1800, 3600], "mr.te")),
        ("squash", x.chance(0.3, "mr.squash")),
        ("last_edited_at", x.maybe(0.2, "u", "mr.le")),
        ("last_edited_by_id", x.maybe(0.2, "author", "mr.leb")),
        ("head_pipeline_id", x.maybe(0.8, x.ri(1, 1_000_000, "mr.hp"), "mr.hpn")),
        ("discussion_locked", x.maybe(0.1, "false", "mr.dl")),
        ("latest_merge_request_diff_id", "lt.latest"),
        ("allow_maintainer_to_push", x.maybe(0.9, x.chance(0.8, "mr.amtpv"), "mr.amtp")),
        ("state_id", "state"),
    ]
    source = (
        f"(SELECT s.*, {x.hot_project('mr.proj')} AS tproj, "
        f"{x.ref('users', 'mr.author')} AS author, "
        f"{x.pick([1, 1, 2, 3, 3, 3, 4], 'mr.state')}::smallint AS state "
        f"FROM {x.series(lo, hi, n, 'mr')} OFFSET 0) AS s\nLEFT JOIN {latest} ON lt.mr = s.g"
    )
    return _insert("merge_requests", cols, source)


def _ins_merge_request_diffs(x: _Gen, src: str, counts: str) -> str:
    """``src``: FROM item ``s(g, c, u, mr)``; ``counts``: FROM item ``cc(d, n)`` of commits."""
    states = ["collected", "collected", "collected", "overflow_commits_safe_size", "empty"]
    cols: list[_Col] = [
        ("id", "g"),
        ("state", x.pick(states, "mrd.state")),
        ("merge_request_id", "mr"),
        ("created_at", "c"),
        ("updated_at", "u"),
        ("base_commit_sha", "md5('base' || g) || substr(md5('b2' || g), 1, 8)"),
        ("real_size", f"{x.ri(1, 500, 'mrd.rs')}::text"),
        ("head_commit_sha", "md5('head' || g) || substr(md5('h2' || g), 1, 8)"),
        ("start_commit_sha", "md5('start' || g) || substr(md5('s2' || g), 1, 8)"),
        ("commits_count", "COALESCE(cc.n, 0)"),
        ("external_diff", x.maybe(0.6, "'diff-' || g", "mrd.ext")),
        ("external_diff_store", x.pick([1, 2], "mrd.store")),
        ("stored_externally", x.maybe(0.8, x.chance(0.6, "mrd.sev"), "mrd.se")),
        ("files_count", f"{x.ri(1, 300, 'mrd.fc')}::smallint"),
        ("sorted", x.chance(0.9, "mrd.sorted")),
        ("diff_type", "1"),
    ]
    return _insert("merge_request_diffs", cols, f"{src}\nLEFT JOIN {counts} ON cc.d = s.g")


def _diff_of_commit(x: _Gen, key: str, diffs: int) -> str:
    return x.ri(1, diffs, "mrdc.diff", key)


def _ins_commits(x: _Gen, source: str) -> str:
    """merge_request_diff_commits from FROM item ``t(r, d, ord, ts)`` (r: row hash key)."""
    users = x.size["users"]
    cols: list[_Col] = [
        ("authored_date", f"ts - interval '1 hour' * {x.r('mrdc.ad', 'r')}"),
        ("committed_date", "ts"),
        ("merge_request_diff_id", "d"),
        ("relative_order", "ord"),
        # 20 raw bytes like a SHA-1, as GitLab stores it.
        ("sha", "decode(md5('c' || r) || substr(md5('d' || r), 1, 8), 'hex')"),
        ("commit_author_id", x.ri(1, users, "mrdc.author", "r")),
        ("committer_id", x.maybe(0.7, x.ri(1, users, "mrdc.committer", "r"), "mrdc.cn", "r")),
        (
            "trailers",
            f"CASE WHEN {x.chance(0.05, 'mrdc.tr', 'r')} THEN {_TRAILER} ELSE '{{}}'::jsonb END",
        ),
    ]
    return _insert("merge_request_diff_commits", cols, source)


def _ins_notes(x: _Gen, lo: int, hi: int, n: int) -> str:
    ntypes = ["Issue", "Issue", "MergeRequest", "MergeRequest", "MergeRequest", "Commit"]
    diff_note = "dtype = 'DiffNote'"
    cols: list[_Col] = [
        ("id", "g"),
        ("note", x.nasty(f"'LGTM :thumbsup: ' || {x.words('nt.note')}{_NOTE_TAIL}")),
        ("noteable_type", "ntype"),
        ("author_id", "author"),
        ("created_at", "c"),
        ("updated_at", "u"),
        ("project_id", x.hot_project("nt.proj")),
        ("attachment", x.maybe(0.01, "'screenshot_' || g || '.png'", "nt.att")),
        (
            "line_code",
            f"CASE WHEN {diff_note} THEN md5('lc' || g) || '_' || {x.ri(1, 500, 'nt.l1')} "
            f"|| '_' || {x.ri(1, 500, 'nt.l2')} END",
        ),
        (
            "commit_id",
            "CASE WHEN ntype = 'Commit' THEN md5('cm' || g) || substr(md5('cn' || g), 1, 8) END",
        ),
        (
            "noteable_id",
            f"CASE WHEN ntype = 'Issue' THEN {x.ref('issues', 'nt.issue')} "
            f"WHEN ntype = 'MergeRequest' THEN {x.ref('merge_requests', 'nt.mr')} END",
        ),
        ("system", "sys"),
        ("st_diff", "NULL"),
        ("updated_by_id", x.maybe(0.05, "author", "nt.upd")),
        ("type", "dtype"),
        (
            "position",
            f"CASE WHEN {diff_note} THEN '{{\"base_sha\":\"' || md5('b' || g) || "
            f"'\",\"new_line\":' || {x.ri(1, 500, 'nt.nl')} || '}}' END",
        ),
        (
            "original_position",
            f"CASE WHEN {diff_note} THEN '{{\"base_sha\":\"' || md5('b' || g) || "
            '\'","old_line":null}\' END',
        ),
        ("resolved_at", "CASE WHEN resolved THEN u END"),
        ("resolved_by_id", "CASE WHEN resolved THEN author END"),
        ("discussion_id", "substr(md5('disc' || g) || md5('disc2' || g), 1, 40)"),
        ("note_html", f"'<p>' || {x.words('nt.html')} || '</p>'"),
        ("cached_markdown_version", x.maybe(0.9, "2031616", "nt.cmv")),
        ("change_position", "NULL"),
        ("resolved_by_push", x.maybe(0.05, "true", "nt.rbp")),
        ("confidential", x.maybe(0.5, x.chance(0.03, "nt.confv"), "nt.conf")),
        ("internal", x.chance(0.02, "nt.internal")),
    ]
    source = (
        f"(SELECT s.*, dtype IS NOT NULL AND {x.chance(0.5, 'nt.res')} AS resolved "
        f"FROM (SELECT s.*, {x.ref('users', 'nt.author')} AS author, "
        f"{x.pick(ntypes, 'nt.type')} AS ntype, {x.chance(0.3, 'nt.sys')} AS sys, "
        f"CASE WHEN {x.chance(0.3, 'nt.dn')} THEN 'DiffNote' "
        f"WHEN {x.chance(0.3, 'nt.disc')} THEN 'DiscussionNote' END AS dtype "
        f"FROM {x.series(lo, hi, n, 'nt')} OFFSET 0) AS s OFFSET 0) AS s"
    )
    return _insert("notes", cols, source)


def _ins_builds(x: _Gen, lo: int, hi: int, n: int) -> str:
    statuses = ["success"] * 6 + [
        "failed",
        "failed",
        "canceled",
        "skipped",
        "manual",
        "running",
        "pending",
        "created",
        "scheduled",
    ]
    done = "st IN ('success', 'failed', 'canceled')"
    pipelines = f"GREATEST(1, {n} / 5)"
    scheduled = x.tz("u + interval '1 hour'")  # scheduled_at is timestamp with time zone
    cols: list[_Col] = [
        ("id", "g"),
        # n = planned size: thirds of the id range go to partitions 100, 101 and 102;
        # touch passes the previous max id so that new builds land in 102.
        (
            "partition_id",
            f"CASE WHEN g <= {n} / 3 THEN 100 WHEN g <= 2 * {n} / 3 THEN 101 ELSE 102 END",
        ),
        ("status", "st::ci_build_status"),
        ("finished_at", f"CASE WHEN {done} THEN u END"),
        ("created_at", "c"),
        ("updated_at", "u"),
        (
            "started_at",
            f"CASE WHEN {done} OR st = 'running' "
            f"THEN c + interval '1 second' * {x.ri(1, 600, 'cb.qd')} END",
        ),
        ("runner_id", f"CASE WHEN {done} OR st = 'running' THEN {x.ri(1, 5000, 'cb.rn')} END"),
        (
            "coverage",
            f"CASE WHEN st = 'success' AND {x.chance(0.2, 'cb.covn')} "
            f"THEN round(({x.r('cb.cov')} * 100)::numeric, 2)::float8 END",
        ),
        ("commit_id", x.ri(1, pipelines, "cb.pipe")),
        ("name", "bname"),
        ("options", x.maybe(0.3, _BUILD_OPTIONS, "cb.opts")),
        ("allow_failure", x.chance(0.1, "cb.af")),
        ("stage", x.pick(["build", "test", "test", "security", "deploy"], "cb.stage")),
        ("trigger_request_id", "NULL"),
        ("stage_idx", x.ri(0, 5, "cb.sidx")),
        ("tag", x.chance(0.05, "cb.tag")),
        ("ref", x.nasty(x.pick(["main", "master", "feature/x", "v16.1.0"], "cb.ref"), 255)),
        ("user_id", x.ref("users", "cb.user", 0.05)),
        ("type", x.pick(["Ci::Build"] * 9 + ["Ci::Bridge"], "cb.type")),
        ("description", "NULL"),
        ("project_id", x.hot_project("cb.proj")),
        ("erased_by_id", "NULL"),
        ("erased_at", "NULL"),
        (
            "artifacts_expire_at",
            f"CASE WHEN {x.chance(0.02, 'cb.far')} "
            "THEN TIMESTAMP '3000-01-01 00:00:00' "
            f"WHEN {x.chance(0.6, 'cb.ae')} THEN u + interval '30 days' END",
        ),
        (
            "environment",
            x.maybe(0.1, x.pick(["production", "staging", "review/feat-x"], "cb.env"), "cb.envn"),
        ),
        ("queued_at", "c + interval '1 second'"),
        ("lock_version", x.ri(0, 3, "cb.lock")),
        ("coverage_regex", x.maybe(0.05, _COVERAGE_REGEX, "cb.covre")),
        (
            "auto_canceled_by_id",
            f"CASE WHEN st = 'canceled' THEN {x.ri(1, 'GREATEST(1, g - 1)', 'cb.acb')} END",
        ),
        ("retried", x.chance(0.05, "cb.retried")),
        ("stage_id", x.ri(1, f"GREATEST(1, {n} / 3)", "cb.stageid")),
        ("protected", x.chance(0.3, "cb.prot")),
        ("failure_reason", f"CASE WHEN st = 'failed' THEN {x.ri(1, 30, 'cb.fr')} END"),
        ("scheduled_at", f"CASE WHEN st = 'scheduled' THEN {scheduled} END"),
        ("upstream_pipeline_id", x.maybe(0.05, x.ri(1, pipelines, "cb.up"), "cb.upn")),
    ]
    source = (
        f"(SELECT s.*, {x.pick(statuses, 'cb.status')} AS st, "
        f"{x.pick(_BUILD_NAMES, 'cb.name')} AS bname "
        f"FROM {x.series(lo, hi, n, 'cb')} OFFSET 0) AS s"
    )
    return _insert("p_ci_builds", cols, source)


def _ins_application_settings(x: _Gen) -> str:
    rate_limits = (
        "jsonb_build_object('notes_create_limit', 300, 'search_rate_limit', 30, "
        "'users_get_by_id_limit_allowlist', jsonb_build_array('alice', 'bob'), "
        f"'nested', jsonb_build_object('emoji', '🦊', 'nasty', {_lit(NASTY[0])}))"
    )
    protected_paths = _arr(
        [
            "/users/password",
            "/users/sign_in",
            "/api/v3/session.json",
            "/path,with,commas",
            'quote"d',
            "NULL",
            None,
        ]
    )
    cols: list[_Col] = [
        ("id", "1"),
        ("default_projects_limit", "100000"),
        ("signup_enabled", "true"),
        ("created_at", f"{x.anchor} - interval '3000 days'"),
        ("updated_at", f"{x.anchor} - interval '2 days'"),
        ("home_page_url", "NULL"),
        ("help_page_text", _lit(NASTY[1] + " " + NASTY[4])),
        ("shared_runners_enabled", "true"),
        ("max_artifacts_size", "1024"),
        ("usage_ping_enabled", "true"),
        ("uuid", f"md5('uuid' || {x.seed})::uuid"),
        ("shared_runners_minutes", "400"),
        ("repository_size_limit", "10737418240"),
        ("protected_paths", f"{protected_paths}::character varying(255)[]"),
        ("domain_denylist", _arr(["spam.example", "mailinator.com", "a\\b", "{braces}", ""])),
        ("default_branch_name", "NULL"),
        ("rate_limits", rate_limits),
        ("container_registry_token_expire_delay", "5"),
    ]
    return _insert("application_settings", cols, "(SELECT 1) AS one")


# --------------------------------------------------------------------------- create

_ANALYZE_COLUMNS = {
    "namespace_statistics": "id",
    "merge_request_diff_commits": "merge_request_diff_id",
    "p_ci_builds": "id, updated_at, project_id",
    "issues": "id, updated_at, project_id",
}


def _default_anchor() -> datetime:
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def _scalar(cur: psycopg.Cursor, query: str | sql.Composable) -> int:
    row = cur.execute(query).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _count_all(cur: psycopg.Cursor) -> dict[str, int]:
    return {
        table: _scalar(cur, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        for table in TABLES
    }


def create(
    dsn: str,
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    anchor: datetime | None = None,
) -> dict[str, int]:
    """(Re)create the demo schema in ``dsn`` and fill it; returns row counts per table.

    ``anchor`` (naive UTC) is the newest updated_at; default: current UTC hour minus 1 hour.
    The content is a pure function of (rows, seed, anchor). One transaction.
    """
    if rows < 1:
        raise ValueError("rows must be >= 1")
    plan = planned_counts(rows)
    if anchor is not None and anchor.tzinfo is not None:
        anchor = anchor.astimezone(UTC).replace(tzinfo=None)
    anchor = anchor or _default_anchor()
    groups, users = plan["namespace_statistics"], plan["users"]
    mrs, diffs = plan["merge_requests"], plan["merge_request_diffs"]
    commits = plan["merge_request_diff_commits"]
    x = _Gen(
        seed=seed,
        anchor=f"TIMESTAMP {_lit(anchor.isoformat(sep=' '))}",
        size={**plan, "groups": groups},
    )
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL standard_conforming_strings = on")  # _lit() relies on it
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
        cur.execute("SET LOCAL work_mem = '64MB'")
        cur.execute("SET LOCAL jit = off")  # compiling these wide expressions costs more
        cur.execute(_DROP)
        cur.execute(_DDL)
        cur.execute(_ins_users(x, 1, users, users))
        cur.execute(_ins_groups(x, 1, groups, groups))
        cur.execute(_ins_user_namespaces(groups + 1, groups + users, groups))
        for nid, name, path, parent in FIXED_NAMESPACES:
            traversal = f"ARRAY[{parent}, {nid}]" if parent else f"ARRAY[{nid}]"
            cur.execute(
                f"UPDATE namespaces SET name = {_lit(name)}, path = {_lit(path)}, "
                f"parent_id = {_lit(parent)}, traversal_ids = {traversal}, "
                f"visibility_level = 20 WHERE id = {nid}"
            )
        cur.execute(_ins_namespace_statistics(x, groups))
        cur.execute(_ins_projects(x, 1, plan["projects"], plan["projects"]))
        for pid, name, path, ns in FIXED_PROJECTS:
            cur.execute(
                f"UPDATE projects SET name = {_lit(name)}, path = {_lit(path)}, "
                f"namespace_id = {ns}, visibility_level = 20, archived = false, "
                f"pending_delete = false WHERE id = {pid}"
            )
        for table, gen in (
            ("members", _ins_members),
            ("milestones", _ins_milestones),
            ("labels", _ins_labels),
            ("issues", _ins_issues),
        ):
            cur.execute(gen(x, 1, plan[table], plan[table]))
        latest = (
            f"(SELECT {_mr_of_diff(x, 'd', mrs)} AS mr, max(d) AS latest "
            f"FROM generate_series(1, {diffs}) AS d GROUP BY 1) AS lt"
        )
        cur.execute(_ins_merge_requests(x, 1, mrs, mrs, latest))
        cur.execute(_ins_label_links(x, 1, plan["label_links"], plan["label_links"]))
        diff_src = (
            f"(SELECT s.*, {_mr_of_diff(x, 'g', mrs)} AS mr "
            f"FROM {x.series(1, diffs, diffs, 'mrd')} OFFSET 0) AS s"
        )
        commit_counts = (
            f"(SELECT {_diff_of_commit(x, 'r', diffs)} AS d, count(*) AS n "
            f"FROM generate_series(1, {commits}) AS r GROUP BY 1) AS cc"
        )
        cur.execute(_ins_merge_request_diffs(x, diff_src, commit_counts))
        # Commits: each row r goes to a random diff; relative_order numbers them per diff.
        commit_src = (
            "(SELECT r, d, (row_number() OVER (PARTITION BY d ORDER BY r) - 1)::int AS ord, "
            "md.created_at - interval '1 minute' AS ts "
            f"FROM (SELECT r, {_diff_of_commit(x, 'r', diffs)} AS d "
            f"FROM generate_series(1, {commits}) AS r) AS t0 "
            "JOIN merge_request_diffs md ON md.id = t0.d) AS t"
        )
        cur.execute(_ins_commits(x, commit_src))
        cur.execute(_ins_notes(x, 1, plan["notes"], plan["notes"]))
        cur.execute(_ins_builds(x, 1, plan["p_ci_builds"], plan["p_ci_builds"]))
        cur.execute(_ins_application_settings(x))
        cur.execute(_CONSTRAINTS)
        # Planner stats for what the tap filters on; a full ANALYZE costs more than the load.
        for table in TABLES:
            cols = _ANALYZE_COLUMNS.get(table, "id, updated_at")
            cur.execute(f"ANALYZE {table} ({cols})")
        counts = _count_all(cur)
        if counts != plan:  # guards generator bugs; rolls the transaction back
            raise RuntimeError(f"row counts {counts} differ from plan {plan}")
    return counts


# --------------------------------------------------------------------------- touch

# (table, extra SET clause) of the tables whose picked rows get updated_at = now.
_TOUCH_UPDATES: tuple[tuple[str, str], ...] = (
    ("namespaces", "description = left('Touched at ' || now()::text, 255)"),
    ("users", "sign_in_count = COALESCE(sign_in_count, 0) + 1, last_activity_on = current_date"),
    ("projects", "last_activity_at = {now}, star_count = star_count + 1"),
    ("members", "access_level = CASE WHEN access_level >= 50 THEN 10 ELSE access_level + 10 END"),
    ("milestones", "state = CASE WHEN state = 'active' THEN 'closed' ELSE 'active' END"),
    ("labels", "color = '#428bca'"),
    ("label_links", "target_type = target_type"),
    ("issues", "state_id = 3 - state_id, lock_version = COALESCE(lock_version, 0) + 1"),
    ("merge_requests", "lock_version = COALESCE(lock_version, 0) + 1"),
    ("merge_request_diffs", "state = 'collected'"),
    ("notes", "note = COALESCE(note, '') || ' (edited)', updated_by_id = author_id"),
    ("p_ci_builds", "lock_version = COALESCE(lock_version, 0) + 1"),
    ("application_settings", "signup_enabled = NOT COALESCE(signup_enabled, false)"),
)
_TIMESTAMPTZ_UPDATED_AT = frozenset({"milestones", "label_links"})
# Tables that also get new rows (share of `fraction`), via the create generators.
_TOUCH_INSERTS = (
    ("members", _ins_members),
    ("labels", _ins_labels),
    ("issues", _ins_issues),
    ("notes", _ins_notes),
    ("p_ci_builds", _ins_builds),
    ("label_links", _ins_label_links),
)


def touch(dsn: str, fraction: float = 0.01, seed: int | None = None) -> dict[str, int]:
    """Simulate activity between two runs; returns {table: distinct rows inserted or changed}.

    Per table about ``fraction`` of the rows (at least 1) are updated and, for users, members,
    labels, label_links, issues, merge_requests, notes and p_ci_builds, about fraction/2 new
    rows inserted. New merge requests and half of the updated ones get a new
    merge_request_diff (id above the previous max) with 1-4 new merge_request_diff_commits;
    new users get a personal namespace. namespace_statistics (no updated_at) gets
    shared_runners_seconds bumped. All in one transaction: every changed row's updated_at is
    that transaction's now() (UTC wall clock in ``timestamp`` columns).
    """
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    changed = dict.fromkeys(TABLES, 0)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL standard_conforming_strings = on")
        if seed is not None:
            cur.execute(f"SELECT setseed({(seed % 2001) / 1000.0 - 1.0})")
        cur.execute("CREATE TEMP TABLE _touched (tbl text, id bigint) ON COMMIT DROP")
        before = _count_all(cur)
        size = {
            t: _scalar(cur, sql.SQL("SELECT max(id) FROM {}").format(sql.Identifier(t)))
            for t in TABLES
            if t != "merge_request_diff_commits"
        }
        size["groups"] = size["namespace_statistics"]
        x = _Gen(
            seed=seed if seed is not None else time.time_ns() % 1_000_000,
            anchor=NOW_UTC,
            size=size,
            fresh=True,
        )

        def k_of(table: str, share: float = 1.0) -> int:
            return max(1, round(fraction * share * before[table]))

        def mark(table: str, lo: int, hi: int) -> None:
            cur.execute(
                f"INSERT INTO _touched SELECT {_lit(table)}, g FROM generate_series({lo}, {hi}) g"
            )

        # 1. updates of existing rows
        for table, extra in _TOUCH_UPDATES:
            now = "now()" if table in _TIMESTAMPTZ_UPDATED_AT else NOW_UTC
            ident = sql.Identifier(table)
            cur.execute(
                sql.SQL(
                    "INSERT INTO _touched SELECT {tbl}, id FROM {t} ORDER BY random() LIMIT {k}"
                ).format(tbl=table, t=ident, k=k_of(table))
            )
            cur.execute(
                sql.SQL(
                    "UPDATE {t} SET updated_at = {now}, {extra} FROM _touched AS x "
                    "WHERE x.tbl = {tbl} AND {t}.id = x.id"
                ).format(
                    t=ident, now=sql.SQL(now), extra=sql.SQL(extra.format(now=NOW_UTC)), tbl=table
                )
            )
        cur.execute(
            "INSERT INTO _touched SELECT 'namespace_statistics', id FROM namespace_statistics "
            f"ORDER BY random() LIMIT {k_of('namespace_statistics')}"
        )
        cur.execute(
            "UPDATE namespace_statistics ns SET shared_runners_seconds = "
            "shared_runners_seconds + 60 + (random() * 600)::int FROM _touched x "
            "WHERE x.tbl = 'namespace_statistics' AND ns.id = x.id"
        )

        # 2. new rows (ids above the current max; created_at = updated_at = now)
        def new_range(table: str) -> tuple[int, int]:
            lo = size[table] + 1
            return lo, lo + k_of(table, 0.5) - 1

        lo, hi = new_range("users")
        cur.execute(_ins_users(x, lo, hi, hi))
        mark("users", lo, hi)
        ns_lo = size["namespaces"] + 1
        cur.execute(_ins_user_namespaces(ns_lo, ns_lo + hi - lo, ns_lo - lo))
        mark("namespaces", ns_lo, ns_lo + hi - lo)
        for table, gen in _TOUCH_INSERTS:
            lo, hi = new_range(table)
            # n = previous max id: for p_ci_builds every new build lands in partition 102.
            cur.execute(gen(x, lo, hi, max(1, size[table])))
            mark(table, lo, hi)
        mr_lo, mr_hi = new_range("merge_requests")
        no_latest = "(SELECT NULL::bigint AS mr, NULL::bigint AS latest) AS lt"
        cur.execute(_ins_merge_requests(x, mr_lo, mr_hi, mr_hi, no_latest))
        mark("merge_requests", mr_lo, mr_hi)

        # 3. new diff versions: one per new MR and per every other updated MR, with commits
        d0 = size["merge_request_diffs"]
        cur.execute(
            "CREATE TEMP TABLE _new_diffs ON COMMIT DROP AS "
            f"SELECT {d0} + row_number() OVER (ORDER BY id) AS g, id AS mr FROM _touched "
            f"WHERE tbl = 'merge_requests' AND (id >= {mr_lo} OR id % 2 = 0)"
        )
        n_diffs = _scalar(cur, "SELECT count(*) FROM _new_diffs")
        diff_src = f"(SELECT g, {NOW_UTC} AS c, {NOW_UTC} AS u, mr FROM _new_diffs OFFSET 0) AS s"
        counts_src = (
            f"(SELECT g AS d, 1 + (hashint8extended(g, {x.seed}) & 3) AS n FROM _new_diffs) AS cc"
        )
        cur.execute(_ins_merge_request_diffs(x, diff_src, counts_src))
        mark("merge_request_diffs", d0 + 1, d0 + n_diffs)
        commit_src = (
            f"(SELECT 1000000000000 + md.id * 100 + o AS r, md.id AS d, o::int AS ord, "
            f"{NOW_UTC} AS ts FROM merge_request_diffs md "
            "CROSS JOIN LATERAL generate_series(0, md.commits_count - 1) AS o "
            f"WHERE md.id > {d0}) AS t"
        )
        cur.execute(_ins_commits(x, commit_src))
        changed["merge_request_diff_commits"] = cur.rowcount
        cur.execute(
            f"UPDATE merge_requests m SET latest_merge_request_diff_id = nd.latest, "
            f"updated_at = {NOW_UTC} "
            "FROM (SELECT mr, max(g) AS latest FROM _new_diffs GROUP BY mr) AS nd "
            "WHERE m.id = nd.mr"
        )
        for tbl, n in cur.execute("SELECT tbl, count(DISTINCT id) FROM _touched GROUP BY tbl"):
            changed[str(tbl)] = int(n)
    return changed


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Demo GitLab.com-shaped source database for the pgp tap."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_create = sub.add_parser("create", help="(re)create and fill the demo schema")
    p_create.add_argument("--dsn", required=True)
    p_create.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="total rows, about")
    p_create.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p_create.add_argument(
        "--anchor",
        type=datetime.fromisoformat,
        default=None,
        help="newest updated_at, naive UTC ISO timestamp (default: this UTC hour - 1h)",
    )
    p_touch = sub.add_parser("touch", help="simulate activity between two pipeline runs")
    p_touch.add_argument("--dsn", required=True)
    p_touch.add_argument("--fraction", type=float, default=0.01)
    p_touch.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.command == "create":
        result = create(args.dsn, rows=args.rows, seed=args.seed, anchor=args.anchor)
    else:
        result = touch(args.dsn, fraction=args.fraction, seed=args.seed)
    print(json.dumps(result, indent=2))
    print(
        f"{args.command}: {sum(result.values())} rows in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

{#-
  Latest version of every row of an incremental (or load_by_id) RAW table.

  RAW is append-only: every run appends the rows of its time window, and windows overlap
  (`lookback_minutes`), so a row that changed or sat in the overlap is there several times.
  The newest upload wins (`_uploaded_at`); within one upload the newest `updated_at`. Only
  columns the tap itself writes decide: rows loaded from BATCH files (production) have no
  `_sdc_sequence`, `_sdc_extracted_at`, `_sdc_batched_at` or `_sdc_received_at`. Within one
  upload a key comes from one window or chunk, so rows still tied are copies of one source row.
  Rows the loader soft-deleted (`_sdc_deleted_at`, i.e. rows of a table version retired by a
  full sync when hard_delete is off; NULL for batch-loaded rows) are skipped.

  Args:
    relation:   the RAW table, e.g. source('gitlab_dotcom', 'issues')
    unique_key: column name or list of names (the manifest's export_table_primary_key, or the
                real composite key where that differs)
    updated_at: tie-breaker column within one upload, or none
  Returns every RAW column plus `_pgp_row_rank` (always 1).
-#}
{% macro pgp_incremental_latest(relation, unique_key, updated_at='updated_at') -%}
{%- set keys = [unique_key] if unique_key is string else unique_key -%}
select *
from (
    select
        raw_rows.*,
        row_number() over (
            partition by {% for key in keys %}raw_rows.{{ key }}{% if not loop.last %}, {% endif %}{% endfor %}
            order by
                raw_rows._uploaded_at desc
                {%- if updated_at %},
                raw_rows.{{ updated_at }} desc nulls last
                {%- endif %}
        ) as _pgp_row_rank
    from {{ relation }} as raw_rows
    where raw_rows._sdc_deleted_at is null
) as ranked
where _pgp_row_rank = 1
{%- endmacro %}

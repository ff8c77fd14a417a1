{#-
  Type-2 history of an SCD RAW table (GitLab's `scd_type_2`): one row per version of a key,
  valid in [valid_from, valid_to), both from `_uploaded_at` of the snapshots.

  Every SCD run appends a full snapshot of the table, all of it with one `_uploaded_at`. A
  version of a key starts at the first snapshot where the key shows these `columns` values and
  lasts while the following snapshots show the same values. `valid_to` is the time of the first
  snapshot that no longer shows that version: the next version's `valid_from`, or - when the
  key is missing from that snapshot (deleted in the source) - that snapshot's time. A version
  still present in the latest snapshot has `valid_to` NULL and `is_current` true. A key that
  comes back after a gap starts a new version, even with the same values, so the windows of a
  key never overlap.

  Args:
    relation:   the RAW table, e.g. source('gitlab_dotcom', 'members')
    unique_key: column name or list of names identifying a row within one snapshot
    columns:    the tracked columns (a change in any of them starts a new version)
  Returns: the key columns, `columns`, valid_from, valid_to, is_current.
-#}
{% macro scd_type_2(relation, unique_key, columns) -%}
{%- set keys = [unique_key] if unique_key is string else unique_key -%}
{%- set row_values = [] -%}
{%- for column in columns -%}
    {%- do row_values.append(
        "coalesce(cast(raw_rows." ~ column ~ " as " ~ dbt.type_string() ~ "), '<null>')"
    ) -%}
    {%- if not loop.last %}{% do row_values.append("'|'") %}{% endif -%}
{%- endfor -%}
{%- set partition_by = keys | join(', ') -%}
with snapshots as (

    select
        snapshot_uploaded_at,
        row_number() over (order by snapshot_uploaded_at) as snapshot_number,
        lead(snapshot_uploaded_at) over (order by snapshot_uploaded_at) as next_snapshot_uploaded_at
    from (
        select distinct _uploaded_at as snapshot_uploaded_at
        from {{ relation }}
    ) as distinct_snapshots

), rows_in_snapshots as (

    select
        {%- for column in keys + columns %}
        raw_rows.{{ column }},
        {%- endfor %}
        snapshots.snapshot_number,
        snapshots.snapshot_uploaded_at,
        {{ dbt.hash(dbt.concat(row_values)) }} as row_hash
    from {{ relation }} as raw_rows
    inner join snapshots
        on raw_rows._uploaded_at = snapshots.snapshot_uploaded_at

), flagged as (

    select
        rows_in_snapshots.*,
        case
            when lag(row_hash) over (partition by {{ partition_by }} order by snapshot_number) = row_hash
                and lag(snapshot_number) over (partition by {{ partition_by }} order by snapshot_number)
                    = snapshot_number - 1
                then 0
            else 1
        end as starts_version
    from rows_in_snapshots

), numbered as (

    select
        flagged.*,
        sum(starts_version) over (
            partition by {{ partition_by }}
            order by snapshot_number
            rows between unbounded preceding and current row
        ) as version_number
    from flagged

), versions as (

    select
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
        version_number,
        min(snapshot_number) as first_snapshot_number,
        max(snapshot_number) as last_snapshot_number
    from numbered
    group by {% for key in keys %}{{ key }}, {% endfor %}version_number

)

select
    {%- for column in keys + columns %}
    numbered.{{ column }},
    {%- endfor %}
    {{ epoch_to_timestamp('numbered.snapshot_uploaded_at') }} as valid_from,
    {{ epoch_to_timestamp('last_seen.next_snapshot_uploaded_at') }} as valid_to,
    last_seen.next_snapshot_uploaded_at is null as is_current
from versions
inner join numbered
    on {% for key in keys %}numbered.{{ key }} = versions.{{ key }} and {% endfor %}numbered.version_number = versions.version_number
    and numbered.snapshot_number = versions.first_snapshot_number
inner join snapshots as last_seen
    on last_seen.snapshot_number = versions.last_snapshot_number
{%- endmacro %}

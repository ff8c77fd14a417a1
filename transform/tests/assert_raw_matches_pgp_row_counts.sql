{#-
  Trusted Data Framework row counts. For the latest run of every stream in pgp_row_counts:
  - loaded: RAW holds exactly the rows the tap read in that run (rows with its _uploaded_at);
  - source: after a complete copy, RAW's copy (the snapshot's rows, or the full sync's table
    version) has as many rows as the source's count(*) taken right after it, within
    var('pgp_row_count_tolerance') (a fraction: the source is live while it is read). Rows,
    not keys: a manifest's primary key need not be unique (merge_request_diff_commits). A
    full sync resumed after a crash may hold its unfinished chunk twice: a resync clears it.
  Returns one row per failed check. Tagged data_trust: `meltano invoke dbt-postgres:trust`.
-#}
{# store_failures: the failing checks stay queryable in <schema>_dbt_test__audit. #}
{{ config(tags=['data_trust'], store_failures=true) }}

{%- set counts = source('gitlab_dotcom', 'pgp_row_counts') -%}
{%- set streams = [] -%}
{%- if execute -%}
{%- set relation = adapter.get_relation(counts.database, counts.schema, counts.identifier) -%}
{%- if relation is none -%}
{{ exceptions.warn("pgp_row_counts is not in RAW yet: no row counts to check") }}
{%- else -%}
{%- set streams = run_query("select distinct stream from " ~ counts).columns[0].values() -%}
{%- endif -%}
{%- endif %}

{%- if streams | length == 0 %}
select
    'none' as stream,
    'none' as check_name,
    0 as expected,
    0 as actual
where 1 = 0
{%- else %}
with latest as (
    select c.*
    from {{ counts }} as c
    where
        c.counted_at = (
            select max(l.counted_at) from {{ counts }} as l
            where l.stream = c.stream
        )
),

raw_by_upload as (
    {%- for stream in streams %}
    select
        '{{ stream }}' as stream,
        _uploaded_at,
        count(*) as row_count
    from {{ counts.database }}.{{ counts.schema }}.{{ stream }}
    group by _uploaded_at
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

raw_by_version as (
    {%- for stream in streams %}
    select
        '{{ stream }}' as stream,
        _sdc_table_version as table_version,
        count(*) as row_count
    from {{ counts.database }}.{{ counts.schema }}.{{ stream }}
    group by _sdc_table_version
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

loaded as (
    select
        latest.stream,
        'loaded' as check_name,
        latest.rows_read as expected,
        coalesce(max(raw_by_upload.row_count), 0) as actual
    from latest
    left join raw_by_upload
        on latest.stream = raw_by_upload.stream
            and latest.uploaded_at = raw_by_upload._uploaded_at
    group by latest.stream, latest.rows_read
),

copies as (
    select
        latest.stream,
        'source' as check_name,
        latest.source_rows as expected,
        coalesce(
            case
                when latest.run_type = 'snapshot' then max(raw_by_upload.row_count)
                else max(raw_by_version.row_count)
            end,
            0
        ) as actual
    from latest
    left join raw_by_upload
        on latest.stream = raw_by_upload.stream
            and latest.uploaded_at = raw_by_upload._uploaded_at
    left join raw_by_version
        on latest.stream = raw_by_version.stream
            and latest.table_version = raw_by_version.table_version
    where latest.source_rows is not null
    group by latest.stream, latest.source_rows, latest.run_type
)

select
    stream,
    check_name,
    expected,
    actual
from loaded
where actual <> expected
union all
select
    stream,
    check_name,
    expected,
    actual
from copies
where abs(actual - expected) > {{ var('pgp_row_count_tolerance') }} * expected
{%- endif %}

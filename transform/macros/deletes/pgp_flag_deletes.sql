{#-
  pgp's deletes (`pgp_is_deleted`, `pgp_is_deleted_updated_at`) on append-only RAW.

  GitLab's pgp exported the primary-key set of every incremental table without
  `deletes_exempt` and UPDATEd RAW in place. Here the tap's deletes pass (`deletes_pass`,
  meltano job `el-main-deletes`) appends the key set to RAW `<table>_pks`; a pass is
  complete once its marker record is loaded (NULL key, `_pgp_key_count` set: the last record
  of the pass), and every record of a pass has the pass's `_sdc_table_version`.

  The latest row of every key (`pgp_incremental_latest`) plus:
    pgp_is_deleted             true when the key is missing from the latest COMPLETE key set
                               and the row was loaded before that pass started (a row loaded
                               later was still in the source after the pass); never NULL.
    pgp_is_deleted_updated_at  when that pass started (`_uploaded_at` of the pass), for rows
                               it judged; NULL for rows loaded after it, or with no pass.
  No complete pass (or no `<table>_pks` table at all): nothing is deleted. An interrupted
  pass has no marker, so the previous complete one still decides.
  The `<table>_pks` table is looked up when the model is built: a view built before the first
  pass is rebuilt by the next `dbt run`.

  Args:
    relation:      the RAW table, e.g. source('gitlab_dotcom', 'issues')
    keys_relation: its key sets, e.g. source('gitlab_dotcom', 'issues_pks')
    key:           the manifest's export_table_primary_key (the key set's column)
    unique_key:    dedup key(s) of pgp_incremental_latest (default: key)
    updated_at:    tie-breaker of pgp_incremental_latest
-#}
{% macro pgp_flag_deletes(
    relation, keys_relation, key='id', unique_key=none, updated_at='updated_at'
) -%}
{%- set keys_table = none -%}
{%- if execute -%}
    {%- set keys_table = adapter.get_relation(
        database=keys_relation.database,
        schema=keys_relation.schema,
        identifier=keys_relation.identifier) -%}
{%- endif -%}
with pgp_latest as (

    {{ pgp_incremental_latest(relation, unique_key or key, updated_at) }}

)
{%- if keys_table is none %}

select
    pgp_latest.*,
    false as pgp_is_deleted,
    cast(null as {{ dbt.type_timestamp() }}) as pgp_is_deleted_updated_at
from pgp_latest
{%- else %},

pgp_passes as (

    -- complete passes: their marker record is loaded
    select
        _sdc_table_version as pass_version,
        _uploaded_at as pass_uploaded_at
    from {{ keys_relation }}
    where _pgp_key_count is not null
        and {{ key }} is null

),

pgp_last_pass as (

    select
        pass_version,
        max(pass_uploaded_at) as pass_uploaded_at
    from pgp_passes
    where pass_version = (select max(pass_version) from pgp_passes)
    group by pass_version

),

pgp_pass_keys as (

    select distinct pass_keys.{{ key }} as pgp_key
    from {{ keys_relation }} as pass_keys
    inner join pgp_last_pass
        on pass_keys._sdc_table_version = pgp_last_pass.pass_version
    where pass_keys.{{ key }} is not null

)

select
    pgp_latest.*,
    coalesce(
        pgp_latest._uploaded_at < pgp_last_pass.pass_uploaded_at
        and pgp_pass_keys.pgp_key is null
        and pgp_latest.{{ key }} is not null,
        false
    ) as pgp_is_deleted,
    case
        when pgp_latest._uploaded_at < pgp_last_pass.pass_uploaded_at
            then {{ epoch_to_timestamp('pgp_last_pass.pass_uploaded_at') }}
    end as pgp_is_deleted_updated_at
from pgp_latest
left join pgp_last_pass
    on 1 = 1
left join pgp_pass_keys
    on pgp_latest.{{ key }} = pgp_pass_keys.pgp_key
{%- endif %}
{%- endmacro %}

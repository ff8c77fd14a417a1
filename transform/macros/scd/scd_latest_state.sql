{#-
  Latest snapshot of an SCD RAW table (GitLab's `scd_latest_state`).

  Every SCD run appends a full copy of the source table; all rows of one run share
  `_uploaded_at` (and `_task_instance` where the manifest has advanced_metadata). The rows
  whose `max_column` equals its maximum are the latest copy. GitLab compared `_task_instance`;
  its default here is `_uploaded_at`, which exists on every pgp table and differs between any
  two runs (a `_task_instance` set per day, as Airflow's was, would merge two runs of a day).

  Args:
    relation:   the RAW table, e.g. source('gitlab_dotcom', 'members')
    max_column: column that tells snapshots apart and orders them
-#}
{% macro scd_latest_state(relation, max_column='_uploaded_at') -%}
select raw_rows.*
from {{ relation }} as raw_rows
where raw_rows.{{ max_column }} = (
    select max(snapshots.{{ max_column }}) from {{ relation }} as snapshots
)
{%- endmacro %}

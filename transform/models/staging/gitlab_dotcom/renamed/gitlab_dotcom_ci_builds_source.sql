with latest as (

    {{ pgp_incremental_latest(source('gitlab_dotcom', 'ci_builds'), 'id') }}

)

select
    id as ci_build_id,
    status,
    finished_at,
    created_at,
    updated_at,
    started_at,
    runner_id,
    cast(coverage as {{ dbt.type_float() }}) as coverage,
    commit_id,
    name,
    options,
    allow_failure,
    stage,
    trigger_request_id,
    stage_idx,
    tag,
    ref,
    user_id,
    type,
    description,
    project_id,
    erased_by_id,
    erased_at,
    artifacts_expire_at,
    environment,
    queued_at,
    lock_version,
    coverage_regex,
    auto_canceled_by_id,
    retried,
    stage_id,
    protected,
    failure_reason,
    scheduled_at,
    upstream_pipeline_id,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest

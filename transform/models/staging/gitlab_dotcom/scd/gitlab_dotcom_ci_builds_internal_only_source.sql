with latest as (

    {{ scd_latest_state(source('gitlab_dotcom', 'ci_builds_internal_only')) }}

)

select
    id as ci_build_id,
    project_id,
    status,
    name,
    ref,
    created_at,
    updated_at,
    finished_at,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest

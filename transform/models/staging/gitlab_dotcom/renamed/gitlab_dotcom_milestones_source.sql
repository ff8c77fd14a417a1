with latest as (

    {{ pgp_incremental_latest(source('gitlab_dotcom', 'milestones'), 'id') }}

)

select
    id as milestone_id,
    iid,
    title,
    description,
    project_id,
    due_date,
    created_at,
    updated_at,
    state,
    start_date,
    group_id,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest

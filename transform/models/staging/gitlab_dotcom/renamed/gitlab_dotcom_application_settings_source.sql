with latest as (

    {{ pgp_incremental_latest(source('gitlab_dotcom', 'application_settings'), 'id') }}

)

select
    id as application_settings_id,
    default_projects_limit,
    signup_enabled,
    created_at,
    updated_at,
    shared_runners_enabled,
    usage_ping_enabled,
    shared_runners_minutes,
    repository_size_limit,
    max_artifacts_size,
    uuid,
    protected_paths,
    domain_denylist,
    default_branch_name,
    help_page_text,
    {{ parse_json('rate_limits') }} as rate_limits,
    container_registry_token_expire_delay,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest

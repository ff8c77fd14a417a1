with latest as (

    {{ pgp_incremental_latest(source('gitlab_dotcom', 'projects'), 'id') }}

)

select
    id as project_id,
    name,
    path,
    description,
    created_at,
    updated_at,
    creator_id,
    namespace_id,
    last_activity_at,
    import_url,
    visibility_level,
    archived,
    avatar,
    merge_requests_template,
    star_count,
    merge_requests_rebase_enabled,
    import_type,
    import_source,
    approvals_before_merge,
    mirror,
    shared_runners_enabled,
    build_timeout,
    pending_delete,
    repository_storage,
    repository_size_limit,
    storage_version,
    last_repository_updated_at,
    container_registry_enabled,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest

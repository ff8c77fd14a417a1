with latest as (

    -- rows deleted in the source (pgp_is_deleted) are left out
    select *
    from {{ ref('gitlab_dotcom_namespaces_dedupe_source') }}
    where not pgp_is_deleted

)

select
    id as namespace_id,
    name,
    path,
    owner_id,
    created_at,
    updated_at,
    type,
    avatar,
    membership_lock,
    share_with_group_lock,
    visibility_level,
    request_access_enabled,
    ldap_sync_status,
    ldap_sync_error,
    ldap_sync_last_update_at,
    lfs_enabled,
    parent_id,
    shared_runners_minutes_limit,
    repository_size_limit,
    require_two_factor_authentication,
    two_factor_grace_period,
    project_creation_level,
    traversal_ids,
    {{ array_element('traversal_ids', 1, dbt.type_bigint()) }} as ultimate_parent_namespace_id,
    {{ array_length('traversal_ids') }} as namespace_depth,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest

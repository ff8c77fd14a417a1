with latest as (

    {{ scd_latest_state(source('gitlab_dotcom', 'members')) }}

)

select
    id as member_id,
    access_level,
    source_id,
    source_type,
    user_id,
    notification_level,
    type,
    created_at,
    created_by_id,
    invite_email,
    invite_accepted_at,
    invite_token,
    requested_at,
    expires_at,
    ldap,
    override,
    member_role_id,
    member_namespace_id,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest

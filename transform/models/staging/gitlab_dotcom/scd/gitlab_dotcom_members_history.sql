with history as (

    {{ scd_type_2(
        source('gitlab_dotcom', 'members'),
        unique_key='id',
        columns=[
            'access_level',
            'source_id',
            'source_type',
            'user_id',
            'notification_level',
            'type',
            'created_at',
            'created_by_id',
            'invite_email',
            'invite_accepted_at',
            'invite_token',
            'requested_at',
            'expires_at',
            'ldap',
            'override',
            'member_role_id',
            'member_namespace_id'
        ]
    ) }}

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
    valid_from,
    valid_to,
    is_current
from history

with latest as (

    {{ pgp_incremental_latest(source('gitlab_dotcom', 'users'), 'id') }}

)

select
    id as user_id,
    email,
    sign_in_count,
    current_sign_in_at,
    last_sign_in_at,
    current_sign_in_ip,
    last_sign_in_ip,
    created_at,
    updated_at,
    name,
    admin,
    projects_limit,
    state,
    confirmed_at,
    avatar,
    external,
    last_activity_on,
    preferred_language,
    private_profile,
    role,
    username,
    first_name,
    last_name,
    user_type,
    otp_required_for_login,
    {{ parse_json('preferences') }} as preferences,
    {{ json_extract_text(parse_json('preferences'), 'dashboard') }} as preferred_dashboard,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest

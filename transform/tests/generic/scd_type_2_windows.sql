{#-
  Validity windows of a type-2 history (see macros/scd/scd_type_2.sql) are well formed: each
  ends after it starts, and the windows of one key follow each other without overlapping (a
  window that is still open must be the key's last). Fails for every offending version.
-#}
{% test scd_type_2_windows(model, unique_key, valid_from='valid_from', valid_to='valid_to') %}
with ordered as (

    select
        {{ unique_key }} as key_value,
        {{ valid_from }} as window_start,
        {{ valid_to }} as window_end,
        lead({{ valid_from }}) over (
            partition by {{ unique_key }}
            order by {{ valid_from }}
        ) as next_window_start
    from {{ model }}

)

select *
from ordered
where (window_end is not null and window_end <= window_start)
    or (next_window_start is not null and (window_end is null or window_end > next_window_start))
{% endtest %}

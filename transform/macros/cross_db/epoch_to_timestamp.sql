{#-
  Epoch seconds (pgp's `_uploaded_at`: a number with a fraction) -> timestamp without time
  zone, in UTC. Microseconds are kept on both warehouses.
-#}
{% macro epoch_to_timestamp(expression) -%}
    {{ return(adapter.dispatch('epoch_to_timestamp')(expression)) }}
{%- endmacro %}

{% macro default__epoch_to_timestamp(expression) -%}
    (to_timestamp({{ expression }}) at time zone 'UTC')
{%- endmacro %}

{% macro snowflake__epoch_to_timestamp(expression) -%}
    to_timestamp_ntz(cast(round({{ expression }} * 1000000) as bigint), 6)
{%- endmacro %}

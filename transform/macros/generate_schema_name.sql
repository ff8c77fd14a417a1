{#-
  A model's custom schema is used as it is, never prefixed with the target schema: the pump
  marts land in exactly `pumps` and `pumps_sensitive`, where the Data Pump reads them.
  Models without a custom schema go to the target schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}

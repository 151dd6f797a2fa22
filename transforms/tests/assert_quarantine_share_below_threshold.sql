-- Data-quality alarm (warning, not an error): a source table of at least 1,000 landed rows losing more than
-- 5% of them to quarantine points at a broken producer rather than at the usual trickle of flawed rows.
{{ config(severity='warn') }}

select source_table, max(landed_rows) as landed_rows, sum(quarantined_share) as quarantined_share
from {{ ref('quarantine_summary') }}
group by source_table
having max(landed_rows) >= 1000 and sum(quarantined_share) > 0.05

-- Packet rates and oper-status changes per 1-minute window (issue: streams and sink at full speed).
--
-- in_pps_avg / out_pps_avg: unicast + non-unicast packets per second, time-weighted over the window.
-- oper_status_changes: how often ifOperStatus changed between consecutive samples in the window;
-- oper_status: its value at the window's last sample (IF-MIB: 1 up, 2 down, ... 7 lowerLayerDown).
-- Added columns default to "not reported" for windows written before this migration.

ALTER TABLE interface_rates_1m ADD COLUMN IF NOT EXISTS in_pps_avg Float64 DEFAULT 0 AFTER speed_bps;
ALTER TABLE interface_rates_1m ADD COLUMN IF NOT EXISTS out_pps_avg Float64 DEFAULT 0 AFTER in_pps_avg;
ALTER TABLE interface_rates_1m ADD COLUMN IF NOT EXISTS oper_status_changes UInt32 DEFAULT 0 AFTER out_pps_avg;
ALTER TABLE interface_rates_1m ADD COLUMN IF NOT EXISTS oper_status Nullable(UInt8) AFTER oper_status_changes;

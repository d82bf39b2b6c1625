"""Alerts: rules judged on observations, forecasts and QC; episodes; the outbox; delivery to the ministries.

* :mod:`watermon.alerts.rules`: pure judgement, data -> condition per rule and station;
* :mod:`watermon.alerts.lifecycle`: episodes with hysteresis, written with their outbox rows;
* :mod:`watermon.alerts.body`: the webhook body (``schemas/alert-event.v1.json``);
* :mod:`watermon.alerts.service`: ``evaluate`` (read, judge, write);
* :mod:`watermon.alerts.commands`: ``watermon alerts evaluate|list|show|ack``;
* :mod:`watermon.alerts.delivery` and the rest: the relay, signing and the reference receiver.

Nothing is imported here, so that the relay and the receiver load without the rest.
"""

"""Flow and reservoir forecasts with uncertainty, verified by hindcasts.

Conventions shared by every part (see :mod:`watermon.forecast.base`):

* Observed data for a time step is an :class:`xarray.Dataset` with dimensions
  ``(station, time)`` on the step's regular grid (``time`` = period start label, UTC,
  as stored: days, pentads 1-5 ... 26-end, decades 1-10, 11-20, 21-end), variables
  ``discharge`` (m3/s), ``precipitation`` (mm per period), ``air_temperature`` (degC),
  and for reservoirs ``reservoir_level``, ``reservoir_volume``, ``reservoir_inflow``,
  ``reservoir_release``; NaN where a station has no value. Coordinate ``period`` along
  ``time`` is the period of the year (1-366, 1-72 or 1-36); ``attrs["step"]`` names the step.
* A forecast issued at ``issue_time`` (a period start) may use values of periods that
  started before it only; lead 1 is the period starting at ``issue_time``.
* Point forecasts are :class:`xarray.DataArray` ``(issue_time, lead)``; probabilistic ones
  add ``quantile``; products stack stations: ``(station, issue_time, lead, quantile)``.
"""

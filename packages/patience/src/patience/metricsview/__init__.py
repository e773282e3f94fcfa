"""`patience metrics` and `rpr metrics`: what the daemon knows, on a terminal.

One implementation for both tools (cli.py parses and dispatches; views.py turns the daemon's
`timeseries`, `runs` and `resource_state` replies into rows; render.py and charts.py draw
them). Imported only when a user asks for metrics, so the tools' start-up does not pay for it.
"""

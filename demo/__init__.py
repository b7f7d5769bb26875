"""`driftsvakt demo`: the whole system on a simulated two-location estate.

Apart from the production packages: the simulated agents, devices and services here
stand in for the estate, and nothing in monitor/ or collectors/ imports them.
"""

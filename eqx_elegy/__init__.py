"""eqx_elegy: Elegy's model API on equinox."""

"""Class names, label maps and colours: one module per dataset, the only place they live."""

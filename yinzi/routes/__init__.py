"""HTTP routes, one module per resource. Handlers stay thin: parse, call the domain or the database, answer."""

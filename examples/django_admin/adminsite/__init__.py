"""A small Django site: the admin (protected by tfa-middleware) and a customer log-in (not)."""

"""tfa-middleware's test suite (a package, so that no installed top-level "tests" shadows it)."""

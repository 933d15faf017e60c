"""A small demo shop (catalog, customer account, admin orders) wrapped by tfa-middleware.

Run it with ``make demo``, or ``uvicorn --factory demo_app.app:create_app``. The shop has its
own log-in and Starlette session and knows nothing about the second factor: the middleware wraps
it from outside, as it would wrap an existing shop.
"""

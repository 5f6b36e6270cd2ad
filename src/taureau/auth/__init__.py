"""Authentication: tokens (JWT), basic (htpasswd) and TLS providers, and the service that
tries them; what a connection or a request proves becomes its role."""

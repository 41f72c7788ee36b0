"""The API's routes, one module per group of resources; every route calls the services."""

from workbench.api.routes import annotations, buckets, collections, leases, retrievers

ROUTERS = (buckets.router, collections.router, retrievers.router, annotations.router,
           leases.router)

"""The API's routes, one module per group of resources; every route calls the services."""

from workbench.api.routes import (
    annotations,
    buckets,
    collections,
    compound,
    leases,
    models,
    retrievers,
    training,
    webhooks,
)

ROUTERS = (buckets.router, collections.router, retrievers.router, annotations.router,
           leases.router, models.router, training.router, compound.router, webhooks.router)

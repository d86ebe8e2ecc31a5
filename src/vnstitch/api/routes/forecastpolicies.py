"""/v1/forecastpolicies: which pairs the proactive loop forecasts and stitches (status: the loop's)."""

from vnstitch.api.routes._crud import resource_router
from vnstitch.domain.forecastpolicy import ForecastPolicy

router = resource_router(ForecastPolicy, "forecastpolicies", "forecast")

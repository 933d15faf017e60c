"""YAML → typed, validated, immutable settings (pydantic models).

Every problem in a file is reported at once by its key path
(``interfaces.admin.path_prefix: must start with '/'``); unknown keys are refused, because a typo
must never silently switch protection off. Strings may use ``${NAME}`` or ``${NAME:-default}`` so
that secrets stay in the environment; secrets are kept in :class:`Secret`, which never prints.
The modules: ``types`` (the section base, shared value types), ``interfaces`` (an interface and
its identity sources), ``sections`` (provider, limits, branding, pool), ``model`` (the whole file),
``loader`` (YAML, ``${VAR}``, pydantic's errors in the words users read).
"""

from __future__ import annotations

from .django_source import DjangoSessionSource as DjangoSessionSource
from .flask_session import FlaskSessionSource as FlaskSessionSource
from .interfaces import IDENTITY_SOURCES as IDENTITY_SOURCES
from .interfaces import CallableSource as CallableSource
from .interfaces import HeaderSource as HeaderSource
from .interfaces import IdentitySettings as IdentitySettings
from .interfaces import InterfaceSettings as InterfaceSettings
from .interfaces import ManageSettings as ManageSettings
from .interfaces import ScopeUserSource as ScopeUserSource
from .interfaces import SessionSource as SessionSource
from .interfaces import StarletteSessionCookieSource as StarletteSessionCookieSource
from .jwt_source import JwtSource as JwtSource
from .loader import load_settings as load_settings
from .loader import settings_from_mapping as settings_from_mapping
from .model import MIN_SECRET_KEY_LENGTH as MIN_SECRET_KEY_LENGTH
from .model import Settings as Settings
from .model import mask_database_url as mask_database_url
from .policy import EnrollGrace as EnrollGrace
from .policy import StepUpRule as StepUpRule
from .sections import DEFAULT_ALLOWED_REGIONS as DEFAULT_ALLOWED_REGIONS
from .sections import DEFAULT_API_URLS as DEFAULT_API_URLS
from .sections import HOURLY_FAILURE_CEILING as HOURLY_FAILURE_CEILING
from .sections import MAX_CODE_TTL_SECONDS as MAX_CODE_TTL_SECONDS
from .sections import MIN_BRAND_CONTRAST as MIN_BRAND_CONTRAST
from .sections import PROVIDER_NAMES as PROVIDER_NAMES
from .sections import BrandingSettings as BrandingSettings
from .sections import LimitSettings as LimitSettings
from .sections import PoolSettings as PoolSettings
from .sections import ProviderSettings as ProviderSettings
from .sections import contrast_with_white as contrast_with_white
from .types import Secret as Secret

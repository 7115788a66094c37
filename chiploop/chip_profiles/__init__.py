"""Chip profiles: typed descriptions of chips, loaded from YAML, and the design rules they impose."""

from chiploop.chip_profiles.loader import list_profiles, load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.chip_profiles.rules import check_network
from chiploop.errors import ProfileError

__all__ = ["ChipProfile", "ProfileError", "check_network", "list_profiles", "load_profile"]

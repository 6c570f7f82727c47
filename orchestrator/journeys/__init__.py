"""Journeys: declarative customer journeys, compiled once and run by a pure engine."""

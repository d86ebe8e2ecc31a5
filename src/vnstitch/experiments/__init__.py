"""Experiments: clients of the controller that replay real traces and print what happened."""

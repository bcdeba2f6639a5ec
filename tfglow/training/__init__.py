"""The trainer behind train.py: flags, problems, distribution, the loop and its logs."""

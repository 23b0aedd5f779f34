"""The pure core: commands, the state union and the decider."""

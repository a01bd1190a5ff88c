"""leaderboard package (see README)."""

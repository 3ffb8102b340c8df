"""Who may use the officer console and its API: roles, region scope and credentials. Pure except
for `credentials`, which hashes with argon2."""

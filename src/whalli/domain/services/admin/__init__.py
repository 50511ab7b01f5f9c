"""Administration use cases: find accounts, change role, plan or disabled flag (admins only)."""

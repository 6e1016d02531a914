"""Services: the work behind the routes, composing policy, crypto, audit and storage."""

"""How to call each upstream type: URL, headers, auth, and what its errors look like."""

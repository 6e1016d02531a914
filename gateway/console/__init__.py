"""The approver console: a web page at `/console` where approvers sign in with their wallet (EIP-4361),
see what awaits them with every signal behind it, and approve or reject by signing in their browser."""

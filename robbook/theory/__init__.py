"""Closed forms of the four papers, one module each: tsipras, ilyas, kamath, moayeri."""

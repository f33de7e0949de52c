"""The app's pages. Each module is a Streamlit script run by ``st.navigation`` (importing one renders it)."""

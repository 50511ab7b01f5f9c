"""Speech to text: transcribing audio sent to the OpenAI-compatible API. (An uploaded audio
file's transcript is its extracted text: ``files.extract_attachment``.)"""

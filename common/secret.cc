#include "common/secret.h"

#include <openssl/crypto.h>

#include <cstring>

namespace berth {

void WipeMemory(void* data, size_t size) {
  if (data != nullptr && size > 0) OPENSSL_cleanse(data, size);
}

void WipeString(std::string& s) {
  WipeMemory(s.data(), s.size());
  s.clear();
}

SecretBytes::SecretBytes(size_t size) : data_(new uint8_t[size]()), size_(size) {}

SecretBytes::SecretBytes(const void* data, size_t size) : SecretBytes(size) {
  if (size > 0) std::memcpy(data_.get(), data, size);
}

SecretBytes SecretBytes::TakeFrom(std::string& s) {
  SecretBytes out(s.data(), s.size());
  WipeString(s);
  return out;
}

SecretBytes::~SecretBytes() { Reset(); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::move(other.data_)), size_(other.size_) {
  other.size_ = 0;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Reset();
    data_ = std::move(other.data_);
    size_ = other.size_;
    other.size_ = 0;
  }
  return *this;
}

bool SecretBytes::Equals(const SecretBytes& other) const {
  if (size_ != other.size_) return false;
  if (size_ == 0) return true;
  return CRYPTO_memcmp(data(), other.data(), size_) == 0;
}

void SecretBytes::Reset() {
  WipeMemory(data_.get(), size_);
  data_.reset();
  size_ = 0;
}

}  // namespace berth
